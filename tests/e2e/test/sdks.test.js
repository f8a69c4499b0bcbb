// Official provider SDKs through the keyport proxy: openai, @anthropic-ai/sdk
// 0.x (sends x-api-key) and 1.x (sends Authorization: Bearer), @google/genai
// and @mistralai/mistralai, each non-streamed and streamed.

import { assertNoOutsideConnections } from '../lib/loopback-guard.js';

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import Anthropic from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';
import { Mistral } from '@mistralai/mistralai';
import Anthropic0 from 'anthropic-sdk-0';
import OpenAI from 'openai';

import { lastLogId, waitForLogRows } from '../lib/keyport.js';
import {
  assertLoggedCall,
  assertRequestLogHasNoSecrets,
  assertTotalsMatchRows,
  shippedPrice,
} from '../lib/request-log.js';
import {
  ANSWER_MARKER,
  assertCleanShutdownAndNoLeaks,
  assertInjected,
  assertNoTokenUpstream,
  DIRECT,
  openSession,
  PROMPT_MARKER,
} from '../lib/session.js';

const ANSWER = `The proxy relayed this answer (${ANSWER_MARKER}).`;
const PROMPT = `Say something short (${PROMPT_MARKER}).`;

/** Name of the session's client token, which the log must name. */
const TOKEN_NAME = 'e2e-client';
/** A token revoked before the proxy starts. */
const REVOKED_TOKEN_NAME = 'revoked-client';

let session;

before(async () => {
  session = await openSession({ answer: ANSWER, tokens: [TOKEN_NAME], revoked: [REVOKED_TOKEN_NAME] });
});

after(async () => {
  await session?.close();
});

/**
 * Runs `call` and returns its result with the requests the mock received
 * meanwhile, once the request log has a row for each of them. With
 * `logged`, also asserts that the log has exactly one row per request with
 * the usage the mock sent. The row's cost must match the
 * prices.toml entry `logged.priceEntry`, which defaults to the model, or
 * be unknown when priceEntry is null.
 */
async function withRequests(provider, call, logged = null) {
  const mock = session.mocks[provider];
  const since = mock.requests.length;
  const logAfter = session.direct ? null : await lastLogId(session.context);
  const result = await call(mock);
  const requests = mock.requests.slice(since);

  if (!logged && !session.direct) {
    // The next test reads the newest row id first, so this call's rows
    // must be written before it returns.
    await waitForLogRows(session.context, { afterId: logAfter, count: requests.length, atLeast: true });
  }
  if (logged && !session.direct) {
    const { model, priceEntry = model } = logged;
    const price = priceEntry === null ? null : shippedPrice(provider, priceEntry);
    assert.ok(priceEntry === null || price, `prices.toml has no entry ${priceEntry} for ${provider}`);
    const rows = await waitForLogRows(session.context, { afterId: logAfter, count: requests.length });
    for (const [index, row] of rows.entries()) {
      assertLoggedCall(row, { provider, model, tokenName: TOKEN_NAME, request: requests[index], price });
    }
  }
  return { result, requests, mock, logAfter };
}

/**
 * Iterates a stream, holding the mock's reply after its first event until
 * the client has seen a chunk. A proxy that buffers the whole response makes
 * the mock wait out its hold time and set `holdTimedOut`.
 */
async function consumeHeldStream(mock, openStream, onChunk) {
  const release = mock.holdStream();
  mock.holdTimedOut = false;
  const stream = await openStream();
  let chunks = 0;
  try {
    for await (const chunk of stream) {
      chunks += 1;
      onChunk(chunk);
      release();
    }
  } finally {
    release();
  }
  assert.equal(mock.holdTimedOut, false, 'the first streamed event reached the client only after the whole reply');
  return chunks;
}

function openAiClient() {
  return new OpenAI({ apiKey: session.apiKey('openai'), baseURL: session.baseUrl('openai'), maxRetries: 0, timeout: 20_000 });
}

test('openai chat completion', async () => {
  const { result, requests, mock } = await withRequests('openai', () =>
    openAiClient().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: PROMPT }],
    }),
    { model: 'gpt-4o-mini' },
  );

  assert.equal(result.choices[0].message.content, ANSWER);
  assert.equal(requests.length, 1);
  assert.equal(result.usage.prompt_tokens, requests[0].sent.usage.input);
  assert.equal(result.usage.completion_tokens, requests[0].sent.usage.output);
  assert.equal(requests[0].url, '/v1/chat/completions');
  assert.equal(requests[0].headers.authorization, `Bearer ${mock.canaryKey}`);
  assert.equal(requests[0].body.messages[0].content, PROMPT);
  assertInjected(session, requests[0]);
});

test('openai chat completion streamed', async () => {
  let text = '';
  let usage = null;
  const { result: chunks, requests } = await withRequests('openai', (mock) =>
    consumeHeldStream(
      mock,
      () =>
        openAiClient().chat.completions.create({
          model: 'gpt-4o-mini',
          messages: [{ role: 'user', content: PROMPT }],
          stream: true,
          stream_options: { include_usage: true },
        }),
      (chunk) => {
        text += chunk.choices[0]?.delta?.content ?? '';
        if (chunk.usage) usage = chunk.usage;
      },
    ),
    { model: 'gpt-4o-mini' },
  );

  assert.equal(text, ANSWER);
  assert.ok(chunks > 2, `expected several chunks, got ${chunks}`);
  assert.equal(requests.length, 1);
  assert.equal(usage?.completion_tokens, requests[0].sent.usage.output);
  assert.equal(requests[0].body.stream, true);
  assertInjected(session, requests[0]);
});

test('openai embeddings', async () => {
  const input = 'twenty characters ok';
  const { result, requests } = await withRequests('openai', () =>
    openAiClient().embeddings.create({ model: 'text-embedding-3-small', input }),
    // prices.toml has no embedding models.
    { model: 'text-embedding-3-small', priceEntry: null },
  );

  // The SDK requests base64 and decodes it into float32 values.
  assert.equal(requests.length, 1);
  assert.equal(requests[0].url, '/v1/embeddings');
  assert.equal(requests[0].body.encoding_format, 'base64');
  assert.deepEqual(result.data[0].embedding, Array.from(new Float32Array([0.25, -0.5, input.length / 100])));
  assert.equal(result.usage.prompt_tokens, requests[0].sent.usage.input);
  assertInjected(session, requests[0]);
});

test('openai models list', async () => {
  const { result, requests } = await withRequests('openai', async () => {
    const ids = [];
    for await (const model of openAiClient().models.list()) ids.push(model.id);
    return ids;
  });

  assert.deepEqual(result, ['gpt-4o-mini']);
  assert.equal(requests.length, 1);
  assert.equal(requests[0].method, 'GET');
  assert.equal(requests[0].url, '/v1/models');
  assertInjected(session, requests[0]);
});

/** The two Anthropic SDK majors and the credential header each sends. */
const ANTHROPIC_SDKS = [
  { name: 'anthropic 0.x', Client: Anthropic0, header: 'x-api-key' },
  { name: 'anthropic 1.x', Client: Anthropic, header: 'authorization' },
];

function anthropicClient(Client) {
  return new Client({ apiKey: session.apiKey('anthropic'), baseURL: session.baseUrl('anthropic'), maxRetries: 0, timeout: 20_000 });
}

/** Asserts the upstream got the vault key in the same header style the client used. */
function assertAnthropicAuth(request, header, mock) {
  if (header === 'x-api-key') {
    assert.equal(request.headers['x-api-key'], mock.canaryKey);
    assert.equal(request.headers.authorization, undefined, 'an Authorization header reached the upstream');
  } else {
    assert.equal(request.headers.authorization, `Bearer ${mock.canaryKey}`);
    assert.equal(request.headers['x-api-key'], undefined, 'an x-api-key header reached the upstream');
  }
}

for (const { name, Client, header } of ANTHROPIC_SDKS) {
  test(`${name} message`, async () => {
    const { result, requests, mock } = await withRequests('anthropic', () =>
      anthropicClient(Client).messages.create({
        model: 'claude-3-5-haiku-latest',
        max_tokens: 64,
        messages: [{ role: 'user', content: PROMPT }],
      }),
      { model: 'claude-3-5-haiku-latest', priceEntry: 'claude-3-5-haiku' },
    );

    assert.equal(result.content[0].text, ANSWER);
    assert.equal(requests.length, 1);
    assert.equal(result.usage.output_tokens, requests[0].sent.usage.output);
    assert.equal(requests[0].url, '/v1/messages');
    assert.ok(requests[0].headers['anthropic-version'], 'anthropic-version header missing upstream');
    assertAnthropicAuth(requests[0], header, mock);
    assertInjected(session, requests[0]);
  });

  test(`${name} message streamed`, async () => {
    let text = '';
    const { result: chunks, requests, mock } = await withRequests('anthropic', (mock) =>
      consumeHeldStream(
        mock,
        async () =>
          anthropicClient(Client).messages.create({
            model: 'claude-3-5-haiku-latest',
            max_tokens: 64,
            messages: [{ role: 'user', content: PROMPT }],
            stream: true,
          }),
        (event) => {
          if (event.type === 'content_block_delta') text += event.delta.text;
        },
      ),
      { model: 'claude-3-5-haiku-latest', priceEntry: 'claude-3-5-haiku' },
    );

    assert.equal(text, ANSWER);
    assert.ok(chunks > 5, `expected the full event sequence, got ${chunks} events`);
    assert.equal(requests.length, 1);
    assert.equal(requests[0].body.stream, true);
    assertAnthropicAuth(requests[0], header, mock);
    assertInjected(session, requests[0]);
  });

  test(`${name} stream helper final message`, async () => {
    const { result, requests } = await withRequests('anthropic', () =>
      anthropicClient(Client)
        .messages.stream({
          model: 'claude-3-5-haiku-latest',
          max_tokens: 64,
          messages: [{ role: 'user', content: PROMPT }],
        })
        .finalMessage(),
      { model: 'claude-3-5-haiku-latest', priceEntry: 'claude-3-5-haiku' },
    );

    assert.equal(result.content[0].text, ANSWER);
    assert.equal(result.stop_reason, 'end_turn');
    assert.equal(requests.length, 1);
    assert.equal(result.usage.output_tokens, requests[0].sent.usage.output);
    assertInjected(session, requests[0]);
  });
}

function googleClient() {
  return new GoogleGenAI({
    apiKey: session.apiKey('google'),
    httpOptions: { baseUrl: session.baseUrl('google'), timeout: 20_000 },
  });
}

function assertGoogleAuth(request, mock) {
  assert.equal(request.headers['x-goog-api-key'], mock.canaryKey);
  assert.equal(new URL(request.url, mock.url).searchParams.get('key'), null, 'a key query parameter reached the upstream');
}

test('google generateContent', async () => {
  const { result, requests, mock } = await withRequests('google', () =>
    googleClient().models.generateContent({ model: 'gemini-2.0-flash', contents: PROMPT }),
    { model: 'gemini-2.0-flash' },
  );

  assert.equal(result.text, ANSWER);
  assert.equal(requests.length, 1);
  const sent = requests[0].sent.usage;
  assert.equal(result.usageMetadata.totalTokenCount, sent.input + sent.output);
  assert.equal(requests[0].url, '/v1beta/models/gemini-2.0-flash:generateContent');
  assert.equal(requests[0].body.contents[0].parts[0].text, PROMPT);
  assertGoogleAuth(requests[0], mock);
  assertInjected(session, requests[0]);
});

test('google generateContentStream', async () => {
  let text = '';
  const { result: chunks, requests, mock } = await withRequests('google', (mock) =>
    consumeHeldStream(
      mock,
      () => googleClient().models.generateContentStream({ model: 'gemini-2.0-flash', contents: PROMPT }),
      (chunk) => {
        text += chunk.text ?? '';
      },
    ),
    { model: 'gemini-2.0-flash' },
  );

  assert.equal(text, ANSWER);
  assert.ok(chunks > 1, `expected several chunks, got ${chunks}`);
  assert.equal(requests.length, 1);
  assert.equal(requests[0].url, '/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse');
  assertGoogleAuth(requests[0], mock);
  assertInjected(session, requests[0]);
});

test('google key query parameter', async () => {
  // Older Gemini clients and curl examples put the key in `?key=` instead of
  // a header. The proxy must take the client token from there too and not
  // pass it upstream.
  const url = `${session.baseUrl('google')}/v1beta/models/gemini-2.0-flash:generateContent?key=${encodeURIComponent(session.apiKey('google'))}`;
  const { result, requests, mock } = await withRequests('google', async () => {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: PROMPT }] }] }),
      signal: AbortSignal.timeout(20_000),
    });
    return { status: response.status, body: await response.json() };
  }, { model: 'gemini-2.0-flash' });

  assert.equal(result.status, 200, `proxy returned ${result.status}: ${JSON.stringify(result.body)}`);
  assert.equal(result.body.candidates[0].content.parts[0].text, ANSWER);
  assert.equal(requests.length, 1);
  assert.equal(new URL(requests[0].url, mock.url).pathname, '/v1beta/models/gemini-2.0-flash:generateContent');
  assert.equal(requests[0].authorized, true);
  assertInjected(session, requests[0]);
});

function mistralClient() {
  return new Mistral({
    apiKey: session.apiKey('mistral'),
    serverURL: session.baseUrl('mistral'),
    retryConfig: { strategy: 'none' },
    timeoutMs: 20_000,
  });
}

test('mistral chat complete', async () => {
  const { result, requests, mock } = await withRequests('mistral', () =>
    mistralClient().chat.complete({ model: 'mistral-small-latest', messages: [{ role: 'user', content: PROMPT }] }),
    { model: 'mistral-small-latest' },
  );

  assert.equal(result.choices[0].message.content, ANSWER);
  assert.equal(requests.length, 1);
  const sent = requests[0].sent.usage;
  assert.equal(result.usage.totalTokens, sent.input + sent.output);
  assert.equal(requests[0].url, '/v1/chat/completions');
  assert.equal(requests[0].headers.authorization, `Bearer ${mock.canaryKey}`);
  assertInjected(session, requests[0]);
});

test('mistral chat stream', async () => {
  let text = '';
  let usage = null;
  const { result: chunks, requests } = await withRequests('mistral', (mock) =>
    consumeHeldStream(
      mock,
      () => mistralClient().chat.stream({ model: 'mistral-small-latest', messages: [{ role: 'user', content: PROMPT }] }),
      (event) => {
        text += event.data.choices[0]?.delta?.content ?? '';
        if (event.data.usage) usage = event.data.usage;
      },
    ),
    { model: 'mistral-small-latest' },
  );

  assert.equal(text, ANSWER);
  assert.ok(chunks > 2, `expected several chunks, got ${chunks}`);
  assert.equal(requests.length, 1);
  assert.equal(usage?.completionTokens, requests[0].sent.usage.output);
  assert.equal(requests[0].body.stream, true);
  assertInjected(session, requests[0]);
});

// --- Request log -------------------------------------------------------------

const needsProxy = DIRECT && 'needs the proxy';

test('openai stream and non-stream log same usage', { skip: needsProxy }, async () => {
  const client = openAiClient();
  const messages = [{ role: 'user', content: PROMPT }];
  const { requests, logAfter } = await withRequests(
    'openai',
    async () => {
      await client.chat.completions.create({ model: 'gpt-4o-mini', messages });
      const stream = await client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages,
        stream: true,
        stream_options: { include_usage: true },
      });
      for await (const chunk of stream) assert.ok(chunk.id);
    },
    { model: 'gpt-4o-mini' },
  );

  assert.equal(requests.length, 2);
  const [plain, streamed] = await waitForLogRows(session.context, { afterId: logAfter, count: 2 });
  assert.equal(plain.streamed, false);
  assert.equal(streamed.streamed, true);
  assert.equal(streamed.input_tokens, plain.input_tokens);
  assert.equal(streamed.output_tokens, plain.output_tokens);
  assert.equal(streamed.cost_usd, plain.cost_usd);
});

test('openai stream without usage logs unknown', { skip: needsProxy }, async () => {
  // Without stream_options.include_usage OpenAI sends no usage at all, so
  // the log must show unknown counts and cost, not zero.
  const { requests, logAfter } = await withRequests('openai', async () => {
    const stream = await openAiClient().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: PROMPT }],
      stream: true,
    });
    for await (const chunk of stream) assert.equal(chunk.usage ?? null, null);
  });

  assert.equal(requests.length, 1);
  assert.equal(requests[0].sent.usage, null);
  const [row] = await waitForLogRows(session.context, { afterId: logAfter, count: 1 });
  assert.equal(row.status, 200);
  assert.equal(row.streamed, true);
  assert.equal(row.input_tokens, null);
  assert.equal(row.output_tokens, null);
  assert.equal(row.cost_usd, null);
});

/**
 * Calls whose replies report cached prompt tokens, with the prices.toml
 * entry of each model. gemini-2.0-flash has no cached price, so its cost
 * must be unknown rather than wrong.
 */
const CACHED_CALLS = [
  {
    provider: 'openai',
    model: 'gpt-4o-mini',
    priceEntry: 'gpt-4o-mini',
    call: (model) => openAiClient().chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }] }),
  },
  {
    provider: 'anthropic',
    model: 'claude-3-5-haiku-latest',
    priceEntry: 'claude-3-5-haiku',
    call: (model) =>
      anthropicClient(Anthropic).messages.create({ model, max_tokens: 64, messages: [{ role: 'user', content: PROMPT }] }),
  },
  {
    provider: 'google',
    model: 'gemini-2.0-flash',
    priceEntry: null,
    call: (model) => googleClient().models.generateContent({ model, contents: PROMPT }),
  },
];

for (const { provider, model, priceEntry, call } of CACHED_CALLS) {
  test(`${provider} cached tokens logged`, { skip: needsProxy }, async () => {
    const mock = session.mocks[provider];
    mock.cachedTokens = 3;
    let requests;
    try {
      ({ requests } = await withRequests(provider, () => call(model), { model, priceEntry }));
    } finally {
      mock.cachedTokens = 0;
    }

    assert.equal(requests.length, 1);
    assert.equal(requests[0].sent.usage.cached, 3);
  });
}

test('revoked token call logged as 401', { skip: needsProxy }, async () => {
  const token = session.context.tokens[REVOKED_TOKEN_NAME];
  const client = new OpenAI({ apiKey: token, baseURL: session.baseUrl('openai'), maxRetries: 0, timeout: 20_000 });
  const { requests, logAfter } = await withRequests('openai', () =>
    assert.rejects(
      client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }] }),
      OpenAI.AuthenticationError,
    ),
  );

  assert.equal(requests.length, 0, 'the proxy forwarded a request with a revoked token');
  const [row] = await waitForLogRows(session.context, { afterId: logAfter, count: 1 });
  assert.equal(row.provider, 'openai');
  assert.equal(row.status, 401);
  assert.equal(typeof row.error_kind, 'string', `the 401 row has error_kind ${row.error_kind}`);
  assert.match(row.error_kind, /^[a-z0-9_]+$/);
  assert.notEqual(row.token_name, TOKEN_NAME, 'the rejected call is logged under the valid token');
  assert.equal(row.input_tokens, null);
  assert.equal(row.cost_usd, null);
});

test('revoked key parameter logged without query', { skip: needsProxy }, async () => {
  // A rejected Gemini call carries the revoked token in `?key=`, and the
  // log must keep the path without it.
  const token = session.context.tokens[REVOKED_TOKEN_NAME];
  const url = `${session.baseUrl('google')}/v1beta/models/gemini-2.0-flash:generateContent?key=${encodeURIComponent(token)}`;
  const { result: status, requests, logAfter } = await withRequests('google', async () => {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: PROMPT }] }] }),
      signal: AbortSignal.timeout(20_000),
    });
    await response.arrayBuffer();
    return response.status;
  });

  assert.equal(status, 401);
  assert.equal(requests.length, 0, 'the proxy forwarded a request with a revoked token');
  const [row] = await waitForLogRows(session.context, { afterId: logAfter, count: 1 });
  assert.equal(row.provider, 'google');
  assert.equal(row.status, 401);
  assert.equal(typeof row.error_kind, 'string', `the 401 row has error_kind ${row.error_kind}`);
  assert.equal(row.path, '/llm/google/v1beta/models/gemini-2.0-flash:generateContent');
});

test('sdk log contains no secrets', { skip: needsProxy }, async () => {
  await assertRequestLogHasNoSecrets(session);
});

test('sdk log totals match rows', { skip: needsProxy }, async () => {
  const rows = await assertTotalsMatchRows(session.context);
  // The comparison must cover failed calls and unknown usage and cost.
  assert.ok(rows.some((row) => row.error_kind !== null), 'the log contains no failed call');
  assert.ok(rows.some((row) => row.input_tokens === null), 'the log contains no call with unknown usage');
  assert.ok(rows.some((row) => row.cost_usd === null), 'the log contains no call with unknown cost');
  assert.equal(new Set(rows.map((row) => row.provider)).size, 4, 'the log has no call for some of the four providers');
});

test('sdk sweep finds no secrets', { skip: DIRECT && 'needs the proxy' }, async () => {
  assertNoTokenUpstream(session);
  await assertCleanShutdownAndNoLeaks(session);
});

test('no connections beyond loopback', () => {
  assertNoOutsideConnections();
});
