// Error paths through the keyport proxy, as the official SDKs report them:
// revoked and unknown client tokens, providers with no key in the vault, and
// a token created and revoked while the proxy runs. The vault here contains
// only the OpenAI key.

import { assertNoOutsideConnections } from '../lib/loopback-guard.js';

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';

import Anthropic from '@anthropic-ai/sdk';
import { ApiError, GoogleGenAI } from '@google/genai';
import { Mistral } from '@mistralai/mistralai';
import { SDKError as MistralError } from '@mistralai/mistralai/models/errors';
import Anthropic0 from 'anthropic-sdk-0';
import OpenAI from 'openai';

import { createToken, revokeToken } from '../lib/keyport.js';
import { assertCleanShutdownAndNoLeaks, assertNoTokenUpstream, DIRECT, openSession } from '../lib/session.js';

/** Maximum wait for `keyport serve` to notice a token created or revoked on disk. */
const TOKEN_RELOAD_LIMIT_MS = 10_000;
const TOKEN_POLL_INTERVAL_MS = 250;

const skip = DIRECT && 'needs the proxy';
let session;

before(async () => {
  if (DIRECT) return;
  session = await openSession({ keys: ['openai'], tokens: ['e2e-client'], revoked: ['revoked-client'] });
});

after(async () => {
  await session?.close();
});

function countRequests() {
  return Object.values(session.mocks).reduce((sum, mock) => sum + mock.requests.length, 0);
}

/** Runs `call`, expects it to throw, and returns the error. */
async function expectError(call) {
  const upstreamBefore = countRequests();
  let error = null;
  try {
    await call();
  } catch (caught) {
    error = caught;
  }
  assert.ok(error, 'the SDK call succeeded but should have failed');
  assert.equal(countRequests(), upstreamBefore, 'the proxy forwarded a request it should have rejected');
  return error;
}

/** Asserts an auth error message names the token problem but not the token itself. */
function assertTokenMessage(error, token) {
  assert.match(error.message, /token/i, `the error message does not mention the token: ${error.message}`);
  assert.ok(!error.message.includes(token), 'the error message repeats the client token');
}

function openAiClient(apiKey) {
  return new OpenAI({ apiKey, baseURL: session.baseUrl('openai'), maxRetries: 0, timeout: 20_000 });
}

function anthropicClient(Client, apiKey) {
  return new Client({ apiKey, baseURL: session.baseUrl('anthropic'), maxRetries: 0, timeout: 20_000 });
}

function googleClient(apiKey) {
  return new GoogleGenAI({ apiKey, httpOptions: { baseUrl: session.baseUrl('google'), timeout: 20_000 } });
}

function mistralClient(apiKey) {
  return new Mistral({ apiKey, serverURL: session.baseUrl('mistral'), retryConfig: { strategy: 'none' }, timeoutMs: 20_000 });
}

const chat = (client) =>
  client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

const message = (client) =>
  client.messages.create({ model: 'claude-3-5-haiku-latest', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });

const generate = (client) => client.models.generateContent({ model: 'gemini-2.0-flash', contents: 'hi' });

const complete = (client) =>
  client.chat.complete({ model: 'mistral-small-latest', messages: [{ role: 'user', content: 'hi' }] });

/** Client calls that each SDK makes with a given client token. */
const SDK_CALLS = [
  { name: 'openai', call: (token) => chat(openAiClient(token)), AuthError: OpenAI.AuthenticationError },
  { name: 'anthropic 0.x', call: (token) => message(anthropicClient(Anthropic0, token)), AuthError: Anthropic0.AuthenticationError },
  { name: 'anthropic 1.x', call: (token) => message(anthropicClient(Anthropic, token)), AuthError: Anthropic.AuthenticationError },
  { name: 'google', call: (token) => generate(googleClient(token)), AuthError: ApiError },
  // The Mistral SDK has no class per status. Its SDKError carries the body.
  { name: 'mistral', call: (token) => complete(mistralClient(token)), AuthError: MistralError },
];

for (const { name, call, AuthError } of SDK_CALLS) {
  test(`${name} revoked token rejected`, { skip }, async () => {
    const token = session.context.tokens['revoked-client'];
    const error = await expectError(() => call(token));

    assert.ok(error instanceof AuthError, `expected ${AuthError.name}, got ${error.constructor.name}: ${error.message}`);
    assert.equal(error.status ?? error.statusCode, 401);
    assertTokenMessage(error, token);
  });
}

test('request without token rejected', { skip }, async () => {
  const upstreamBefore = countRequests();
  const response = await fetch(`${session.baseUrl('openai')}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    signal: AbortSignal.timeout(20_000),
  });
  const body = await response.json();

  assert.equal(response.status, 401);
  assert.match(body.error?.message ?? '', /token/i, `the OpenAI-shaped error does not mention the token: ${JSON.stringify(body)}`);
  assert.equal(countRequests(), upstreamBefore, 'the proxy forwarded a request without a client token');
});

test('openai unknown token rejected', { skip }, async () => {
  const token = 'kp_neverIssuedByThisVault0000000000000000';
  const error = await expectError(() => chat(openAiClient(token)));

  assert.ok(error instanceof OpenAI.AuthenticationError, `got ${error.constructor.name}: ${error.message}`);
  assertTokenMessage(error, token);
});

/** Calls for providers whose key is not in this session's vault. */
const MISSING_KEY_CALLS = [
  { provider: 'anthropic', sdk: 'anthropic 0.x', call: (token) => message(anthropicClient(Anthropic0, token)) },
  { provider: 'anthropic', sdk: 'anthropic 1.x', call: (token) => message(anthropicClient(Anthropic, token)) },
  { provider: 'google', sdk: 'google', call: (token) => generate(googleClient(token)) },
  { provider: 'mistral', sdk: 'mistral', call: (token) => complete(mistralClient(token)) },
];

for (const { provider, sdk, call } of MISSING_KEY_CALLS) {
  test(`${sdk} missing ${provider} key names fix`, { skip }, async () => {
    const error = await expectError(() => call(session.token));

    assert.ok(
      error.message.includes(`keyport key set ${provider}`),
      `the error message does not say \`keyport key set ${provider}\`: ${error.message}`,
    );
    const status = error.status ?? error.statusCode;
    assert.equal(typeof status, 'number', `the SDK error has no HTTP status: ${error.message}`);
    assert.ok(status >= 400, `expected a client error status, got ${status}`);
    assert.ok(status < 500, `expected a client error status, got ${status}`);
  });
}

/**
 * Repeats `attempt` until it returns true or the reload limit passes.
 * Returns whether it succeeded.
 */
async function pollUntil(attempt) {
  const deadline = Date.now() + TOKEN_RELOAD_LIMIT_MS;
  while (Date.now() < deadline) {
    if (await attempt()) return true;
    await sleep(TOKEN_POLL_INTERVAL_MS);
  }
  return false;
}

test('token revoked while serving', { skip }, async () => {
  const token = await createToken(session.context, 'live-client');
  session.context.tokens['live-client'] = token;
  const client = openAiClient(token);

  const accepted = await pollUntil(async () => {
    try {
      await chat(client);
      return true;
    } catch (error) {
      if (error instanceof OpenAI.AuthenticationError) return false;
      throw error;
    }
  });
  assert.ok(accepted, `the proxy did not accept a token created while serving within ${TOKEN_RELOAD_LIMIT_MS} ms`);

  await revokeToken(session.context, 'live-client');
  let lastError = null;
  const rejected = await pollUntil(async () => {
    try {
      await chat(client);
      return false;
    } catch (error) {
      lastError = error;
      return error instanceof OpenAI.AuthenticationError;
    }
  });
  assert.ok(rejected, `the proxy still accepted a revoked token after ${TOKEN_RELOAD_LIMIT_MS} ms (last error: ${lastError?.message})`);
  assertTokenMessage(lastError, token);
});

test('errors sweep finds no secrets', { skip }, async () => {
  assertNoTokenUpstream(session);
  await assertCleanShutdownAndNoLeaks(session);
});

test('no connections beyond loopback', () => {
  assertNoOutsideConnections();
});
