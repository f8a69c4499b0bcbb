// One test file's setup: mock upstreams, a prepared keyport data dir and a
// running proxy, plus the checks every file ends with.
//
// With E2E_DIRECT=1 the clients call the mocks directly with the canary
// keys and no keyport process runs. That mode separates an SDK or mock change
// from a proxy fault. Tests that need the proxy skip in it.

import assert from 'node:assert/strict';
import fs from 'node:fs/promises';

import { cleanup, findSecretLeaks, listFiles, prepareKeyport, proxyBaseUrl, startServe, stopServe } from './keyport.js';
import { CANARY_KEYS, closeAll, configBaseUrl, startAllMockUpstreams } from './mock-upstreams.js';

export const DIRECT = process.env.E2E_DIRECT === '1';

/**
 * Text that tests put in prompts and mock replies. Keyport must not log
 * request or response bodies, so the sweep expects neither in its output.
 */
export const PROMPT_MARKER = 'prompt-marker-5d1e0c';
export const ANSWER_MARKER = 'answer-marker-93b7aa';

/**
 * Starts the mocks and, unless in direct mode, a keyport proxy whose vault
 * contains the canary keys of `keys` and whose token list has `tokens` and the
 * already revoked `revoked`. The session's `token` is the first of `tokens`.
 */
export async function openSession({ keys, tokens = ['e2e-client'], revoked = [], answer } = {}) {
  const mocks = await startAllMockUpstreams({ answer });
  if (DIRECT) {
    return {
      direct: true,
      mocks,
      token: null,
      baseUrl: (provider) => configBaseUrl(mocks[provider]),
      apiKey: (provider) => CANARY_KEYS[provider],
      close: () => closeAll(mocks),
    };
  }

  let context;
  try {
    context = await prepareKeyport({ mocks, keys, tokens, revoked });
    await startServe(context);
  } catch (error) {
    await cleanup(context);
    await closeAll(mocks);
    throw error;
  }
  const token = context.tokens[tokens[0]];
  return {
    direct: false,
    mocks,
    context,
    token,
    baseUrl: (provider) => proxyBaseUrl(context, provider),
    apiKey: () => token,
    close: async () => {
      await cleanup(context);
      await closeAll(mocks);
    },
  };
}

/**
 * Asserts that one request reached the mock with the vault canary key and
 * without any client token anywhere in its URL, headers or body.
 */
export function assertInjected(session, request) {
  assert.ok(request, 'the mock upstream received no request');
  assert.equal(request.authorized, true, `the mock did not receive the vault key: ${describeAuth(request)}`);
  assertNoClientToken(session, request);
}

/** Asserts that no request any mock received carries a client token. */
export function assertNoTokenUpstream(session) {
  for (const mock of Object.values(session.mocks)) {
    for (const request of mock.requests) assertNoClientToken(session, request);
  }
}

function assertNoClientToken(session, request) {
  if (session.direct) return;
  const seen = JSON.stringify([request.url, request.headers, request.rawBody]);
  for (const [name, token] of Object.entries(session.context.tokens)) {
    assert.ok(!seen.includes(token), `the mock received client token ${name} in ${request.method} ${request.url}`);
  }
}

function describeAuth(request) {
  const { authorization, 'x-api-key': xApiKey, 'x-goog-api-key': googKey } = request.headers;
  return JSON.stringify({ url: request.url, authorization, 'x-api-key': xApiKey, 'x-goog-api-key': googKey });
}

/** Returns the canary keys and the session's client tokens, keyed by a name for messages. */
export function secretNeedles(session) {
  const secrets = { ...CANARY_KEYS };
  for (const [name, token] of Object.entries(session.context.tokens)) secrets[`client token ${name}`] = token;
  return secrets;
}

/**
 * Stops the proxy and checks what it left behind: a clean exit on SIGTERM,
 * no canary key or client token in its output or data files (the snapshot
 * included, where keys must be encrypted), and nothing written to HOME.
 * Prompt and reply text must not be in its output or data files either,
 * the request log included.
 */
export async function assertCleanShutdownAndNoLeaks(session) {
  const serveLog = session.context.serve.record.stderr;
  assert.ok(serveLog.length > 0, 'keyport serve logged nothing, so the sweep of its output would prove nothing');

  const stopped = await stopServe(session.context);
  assert.equal(stopped.killed, false, 'keyport serve did not exit within the time limit after SIGTERM');
  assert.equal(stopped.signal, null, `keyport serve was ended by signal ${stopped.signal} instead of exiting`);
  assert.equal(stopped.code, 0, `keyport serve exited with ${stopped.code} after SIGTERM\n${session.context.serve.record.stderr}`);

  const secrets = secretNeedles(session);
  const files = await listFiles(session.context.dataDir);
  assert.ok(
    files.some((file) => file.endsWith('vault.stronghold')),
    `no vault.stronghold in ${session.context.dataDir}; the sweep would miss the snapshot`,
  );
  const leaks = await findSecretLeaks(session.context, secrets);
  assert.deepEqual(leaks, [], `secrets found in clear:\n${leaks.join('\n')}`);

  const bodies = await findSecretLeaks(session.context, { 'prompt text': PROMPT_MARKER, 'reply text': ANSWER_MARKER });
  assert.deepEqual(bodies, [], `request or response bodies found in keyport output or data files:\n${bodies.join('\n')}`);

  const homeEntries = await fs.readdir(session.context.home);
  assert.deepEqual(homeEntries, [], 'keyport wrote to HOME although --data-dir was given');
}
