// Mock provider upstreams for the end-to-end tests.
//
// Each mock is a plain `http` server on 127.0.0.1:0 that records every
// request and answers in its provider's wire format, streamed (SSE) or not,
// with usage fields. A request that does not carry exactly the vault canary
// key gets a 401 in the provider's error shape, so a test fails whenever the
// proxy forwards the client token or forgets to inject the key.
//
// Token counts depend on the prompt and the answer, so the same prompt gets
// the same counts streamed or not, while different prompts usually get
// different counts. Each recorded request keeps the usage and request id
// its reply carried in `sent`, for tests that compare them with keyport's
// request log.

import http from 'node:http';
import zlib from 'node:zlib';

/** Vault keys that the tests store in Keyport and that only mocks may see. */
export const CANARY_KEYS = Object.freeze({
  openai: 'sk-vault-oai-CANARY0001',
  anthropic: 'sk-ant-vault-CANARY0002',
  google: 'AIzaVAULT-CANARY0003',
  mistral: 'mistral-vault-CANARY0004',
});

export const PROVIDERS = Object.freeze(Object.keys(CANARY_KEYS));

/** Maximum wait for a test to release a held stream (see `holdStream`). */
const STREAM_HOLD_TIMEOUT_MS = 5_000;

/** Bytes per token in the mocks' stand-in for a tokenizer. */
const BYTES_PER_TOKEN = 4;

/**
 * Starts one mock upstream for `provider` and resolves once it listens.
 *
 * `answer` is the assistant text of every chat reply. Tests can change it
 * later through `mock.answer`.
 */
export async function startMockUpstream(provider, { answer = `${provider} mock answer` } = {}) {
  if (!CANARY_KEYS[provider]) {
    throw new Error(`unknown mock provider "${provider}"; expected one of ${PROVIDERS.join(', ')}`);
  }

  const mock = {
    provider,
    canaryKey: CANARY_KEYS[provider],
    answer,
    /**
     * Prompt tokens that replies report as read from the provider's cache.
     * The Mistral mock ignores it, since Mistral reports no cached tokens.
     */
    cachedTokens: 0,
    /**
     * Every request received, in order: { method, url, headers, rawBody,
     * body, authorized, sent }. `sent` is the { usage, requestId } of the
     * reply, each null when the reply carried none. Usage is { input,
     * output, cached }, and input includes the cached tokens, as in
     * keyport's log.
     */
    requests: [],
    /** Set when a held stream was never released (see `holdStream`). */
    holdTimedOut: false,
    hold: null,
    port: 0,
    url: '',
  };

  // Pauses the next streamed reply after its first event until `release()` is
  // called. A test releases it only after its client has seen the first
  // chunk, which proves the proxy forwards events as they arrive instead of
  // buffering the whole response.
  mock.holdStream = () => {
    let release;
    const released = new Promise((resolve) => {
      release = resolve;
    });
    mock.hold = { released, release };
    return release;
  };

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      handleRequest(mock, req, Buffer.concat(chunks).toString('utf8'), res).catch((error) => {
        res.destroy(error);
      });
    });
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });

  mock.port = server.address().port;
  mock.url = `http://127.0.0.1:${mock.port}`;
  mock.close = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return mock;
}

/** Starts one mock per provider; returns them keyed by provider id. */
export async function startAllMockUpstreams(options = {}) {
  const entries = await Promise.all(
    PROVIDERS.map(async (provider) => [provider, await startMockUpstream(provider, options)]),
  );
  return Object.fromEntries(entries);
}

/** Closes every mock in a map returned by `startAllMockUpstreams`. */
export async function closeAll(mocks) {
  await Promise.all(Object.values(mocks).map((mock) => mock.close()));
}

/**
 * Base URL for Keyport's `config.toml`: OpenAI's includes `/v1`, the other
 * providers add their own version prefix to the request path.
 */
export function configBaseUrl(mock) {
  return mock.provider === 'openai' ? `${mock.url}/v1` : mock.url;
}

async function handleRequest(mock, req, rawBody, res) {
  let body = null;
  try {
    body = rawBody ? JSON.parse(rawBody) : null;
  } catch {
    body = null;
  }

  const url = new URL(req.url, mock.url);
  const authorized = isAuthorized(mock, req.headers, url);
  const record = {
    method: req.method,
    url: req.url,
    headers: { ...req.headers },
    rawBody,
    body,
    authorized,
    sent: { usage: null, requestId: null },
  };
  mock.requests.push(record);

  if (!authorized) {
    sendJson(res, 401, unauthorizedBody(mock.provider));
    return;
  }

  const route = ROUTES[mock.provider].find((candidate) => candidate.match(req.method, url.pathname));
  if (!route) {
    sendJson(res, 404, notFoundBody(mock.provider, `${req.method} ${url.pathname}`));
    return;
  }
  await route.reply({ mock, url, body, res, record });
}

/**
 * Returns whether the request carries the canary key, or one of the keys a
 * test added to `mock.extraKeys`, in the provider's own place.
 */
function isAuthorized(mock, headers, url) {
  return [mock.canaryKey, ...(mock.extraKeys ?? [])].some((key) => carriesKey(mock.provider, key, headers, url));
}

function carriesKey(provider, key, headers, url) {
  switch (provider) {
    case 'openai':
    case 'mistral':
      return headers.authorization === `Bearer ${key}`;
    case 'anthropic':
      return headers['x-api-key'] === key || headers.authorization === `Bearer ${key}`;
    case 'google':
      return headers['x-goog-api-key'] === key || url.searchParams.get('key') === key;
    default:
      return false;
  }
}

function unauthorizedBody(provider) {
  switch (provider) {
    case 'openai':
      return {
        error: {
          message: 'Incorrect API key provided (mock upstream expects the vault canary key).',
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_api_key',
        },
      };
    case 'anthropic':
      return {
        type: 'error',
        error: { type: 'authentication_error', message: 'invalid x-api-key (mock upstream)' },
      };
    case 'google':
      return {
        error: {
          code: 401,
          message: 'API key not valid (mock upstream expects the vault canary key).',
          status: 'UNAUTHENTICATED',
        },
      };
    default:
      return { object: 'error', message: 'Unauthorized (mock upstream)', type: 'invalid_request_error', param: null, code: null };
  }
}

function notFoundBody(provider, what) {
  const message = `mock ${provider} upstream has no route for ${what}`;
  if (provider === 'anthropic') return { type: 'error', error: { type: 'not_found_error', message } };
  if (provider === 'google') return { error: { code: 404, message, status: 'NOT_FOUND' } };
  return { error: { message, type: 'invalid_request_error', param: null, code: 'not_found' } };
}

/**
 * Sends `value` as JSON. The body is gzip-compressed when the request
 * accepts gzip, as the SDKs' requests do, so keyport has to decode the body
 * to read the usage in it while it forwards the compressed bytes.
 */
function sendJson(res, status, value, headers = {}) {
  let body = Buffer.from(JSON.stringify(value), 'utf8');
  const encoding = {};
  if (/\bgzip\b/.test(res.req.headers['accept-encoding'] ?? '')) {
    body = zlib.gzipSync(body);
    encoding['content-encoding'] = 'gzip';
  }
  res.writeHead(status, {
    ...headers,
    ...encoding,
    'content-type': 'application/json',
    'content-length': body.length,
  });
  res.end(body);
}

/** Returns the mocks' token count for `text`: one token per four UTF-8 bytes, at least one. */
function countTokens(text) {
  return Math.max(1, Math.ceil(Buffer.byteLength(text, 'utf8') / BYTES_PER_TOKEN));
}

/**
 * Returns the usage a reply to `body` reports, as { input, output, cached }
 * with cached tokens included in input. Input is counted over the prompt
 * fields only, so `stream` and `stream_options` do not change it.
 */
function usageFor(mock, body) {
  const prompt = JSON.stringify([body?.system, body?.systemInstruction, body?.messages, body?.contents, body?.input]);
  const input = countTokens(prompt);
  const cached = mock.provider === 'mistral' ? 0 : Math.min(mock.cachedTokens, input);
  return { input, output: countTokens(mock.answer), cached };
}

/** Returns a request id unique within this mock, in the provider's style. */
function requestIdFor(mock) {
  return `req_mock${mock.provider}${mock.requests.length}`;
}

/** Splits the answer into a few pieces so streamed replies have several events. */
function splitAnswer(text) {
  const size = Math.max(1, Math.ceil(text.length / 4));
  const pieces = [];
  for (let start = 0; start < text.length; start += size) {
    pieces.push(text.slice(start, start + size));
  }
  return pieces.length > 0 ? pieces : [''];
}

/**
 * Writes SSE events, pausing after the first one while a hold is set.
 * Each event is `{ event?, data }`, where `data` is a string or a JSON value.
 */
async function sendSse(mock, res, events, { lineEnd = '\n', headers = {} } = {}) {
  res.writeHead(200, {
    ...headers,
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
  });

  for (const [index, event] of events.entries()) {
    const data = typeof event.data === 'string' ? event.data : JSON.stringify(event.data);
    const lines = event.event ? [`event: ${event.event}`, `data: ${data}`] : [`data: ${data}`];
    res.write(lines.join(lineEnd) + lineEnd + lineEnd);

    if (index === 0 && mock.hold) {
      const { released } = mock.hold;
      mock.hold = null;
      let timer;
      const timedOut = await Promise.race([
        released.then(() => false),
        new Promise((resolve) => {
          timer = setTimeout(() => resolve(true), STREAM_HOLD_TIMEOUT_MS);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) mock.holdTimedOut = true;
    }
  }
  res.end();
}

function nowSeconds() {
  return Math.floor(Date.now() / 1000);
}

// --- OpenAI and Mistral -----------------------------------------------------

/** Returns `usage` in OpenAI's shape. Mistral's shape has no token details. */
function openAiUsage(provider, usage) {
  const counts = {
    prompt_tokens: usage.input,
    completion_tokens: usage.output,
    total_tokens: usage.input + usage.output,
  };
  if (provider === 'mistral') return counts;
  return {
    ...counts,
    prompt_tokens_details: { cached_tokens: usage.cached, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}

function openAiChat({ mock, body, res, record }) {
  const id = `chatcmpl-mock${mock.requests.length}`;
  const model = body?.model ?? 'unknown-model';
  const created = nowSeconds();
  const sentUsage = usageFor(mock, body);
  const usage = openAiUsage(mock.provider, sentUsage);
  // OpenAI sends its request id in `x-request-id`. The Mistral mock sends
  // no request id, so the log checks also cover a reply without one.
  const headers = {};
  if (mock.provider === 'openai') {
    record.sent.requestId = requestIdFor(mock);
    headers['x-request-id'] = record.sent.requestId;
  }

  if (!body?.stream) {
    record.sent.usage = sentUsage;
    const message =
      mock.provider === 'mistral'
        ? { role: 'assistant', content: mock.answer, tool_calls: null, prefix: false }
        : { role: 'assistant', content: mock.answer, refusal: null, annotations: [] };
    sendJson(
      res,
      200,
      {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message, logprobs: null, finish_reason: 'stop' }],
        usage,
        ...(mock.provider === 'openai' ? { system_fingerprint: 'fp_mock' } : {}),
      },
      headers,
    );
    return Promise.resolve();
  }

  const chunk = (delta, finishReason, extra = {}) => ({
    id,
    object: 'chat.completion.chunk',
    created,
    model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    ...extra,
  });
  const events = [{ data: chunk({ role: 'assistant', content: '' }, null) }];
  for (const piece of splitAnswer(mock.answer)) {
    events.push({ data: chunk({ content: piece }, null) });
  }

  // Mistral reports usage on the last content chunk. OpenAI sends a separate
  // usage-only chunk, and only when the client requests it.
  if (mock.provider === 'mistral') {
    events.push({ data: chunk({ content: '' }, 'stop', { usage }) });
    record.sent.usage = sentUsage;
  } else {
    events.push({ data: chunk({}, 'stop') });
    if (body.stream_options?.include_usage) {
      events.push({ data: { id, object: 'chat.completion.chunk', created, model, choices: [], usage } });
      record.sent.usage = sentUsage;
    }
  }
  events.push({ data: '[DONE]' });
  return sendSse(mock, res, events, { headers });
}

function openAiEmbeddings({ mock, body, res, record }) {
  const inputs = Array.isArray(body?.input) ? body.input : [body?.input ?? ''];
  // Deterministic vectors derived from the input length, so a test can check
  // that the values survived the trip and the base64 decoding.
  const data = inputs.map((input, index) => {
    const vector = [0.25, -0.5, String(input).length / 100];
    const embedding =
      body?.encoding_format === 'base64'
        ? Buffer.from(new Float32Array(vector).buffer).toString('base64')
        : vector;
    return { object: 'embedding', index, embedding };
  });
  const { input } = usageFor(mock, body);
  record.sent.usage = { input, output: null, cached: 0 };
  sendJson(res, 200, {
    object: 'list',
    data,
    model: body?.model ?? 'unknown-model',
    usage: { prompt_tokens: input, total_tokens: input },
  });
  return Promise.resolve();
}

function openAiModels({ res }) {
  sendJson(res, 200, {
    object: 'list',
    data: [{ id: 'gpt-4o-mini', object: 'model', created: 0, owned_by: 'mock' }],
  });
  return Promise.resolve();
}

// --- Anthropic ---------------------------------------------------------------

function anthropicMessages({ mock, body, res, record }) {
  const id = `msg_mock${mock.requests.length}`;
  const model = body?.model ?? 'unknown-model';
  const sentUsage = usageFor(mock, body);
  record.sent.usage = sentUsage;
  record.sent.requestId = requestIdFor(mock);
  const headers = { 'request-id': record.sent.requestId };
  // Anthropic's input_tokens leaves out cache reads and writes.
  const usage = {
    input_tokens: sentUsage.input - sentUsage.cached,
    output_tokens: sentUsage.output,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: sentUsage.cached,
  };

  if (!body?.stream) {
    sendJson(
      res,
      200,
      {
        id,
        type: 'message',
        role: 'assistant',
        model,
        content: [{ type: 'text', text: mock.answer }],
        stop_reason: 'end_turn',
        stop_sequence: null,
        usage,
      },
      headers,
    );
    return Promise.resolve();
  }

  // A stream reports the prompt counts and a first output count in
  // message_start, then the cumulative output count in message_delta.
  const events = [
    {
      event: 'message_start',
      data: {
        type: 'message_start',
        message: {
          id,
          type: 'message',
          role: 'assistant',
          model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { ...usage, output_tokens: 1 },
        },
      },
    },
    {
      event: 'content_block_start',
      data: { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    },
    { event: 'ping', data: { type: 'ping' } },
  ];
  for (const piece of splitAnswer(mock.answer)) {
    events.push({
      event: 'content_block_delta',
      data: { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: piece } },
    });
  }
  events.push(
    { event: 'content_block_stop', data: { type: 'content_block_stop', index: 0 } },
    {
      event: 'message_delta',
      data: {
        type: 'message_delta',
        delta: { stop_reason: 'end_turn', stop_sequence: null },
        usage: { output_tokens: sentUsage.output },
      },
    },
    { event: 'message_stop', data: { type: 'message_stop' } },
  );
  return sendSse(mock, res, events, { headers });
}

// --- Google Gemini -----------------------------------------------------------

/**
 * Builds one Gemini response or stream chunk. `outputSoFar` is the
 * candidate token count up to this chunk, since stream chunks report
 * running counts and only the last one has the final count.
 */
function geminiResponse(mock, model, text, finished, usage, outputSoFar) {
  return {
    candidates: [
      {
        content: { parts: [{ text }], role: 'model' },
        ...(finished ? { finishReason: 'STOP' } : {}),
        index: 0,
      },
    ],
    usageMetadata: {
      promptTokenCount: usage.input,
      candidatesTokenCount: outputSoFar,
      totalTokenCount: usage.input + outputSoFar,
      // Gemini leaves the field out when no cached content was read.
      ...(usage.cached > 0 ? { cachedContentTokenCount: usage.cached } : {}),
    },
    modelVersion: model,
    responseId: `mock${mock.requests.length}`,
  };
}

function geminiGenerate({ mock, url, body, res, record }) {
  const match = url.pathname.match(/\/models\/([^/:]+):(generateContent|streamGenerateContent)$/);
  const model = match[1];
  const usage = usageFor(mock, body);
  record.sent.usage = usage;

  if (match[2] === 'generateContent') {
    sendJson(res, 200, geminiResponse(mock, model, mock.answer, true, usage, usage.output));
    return Promise.resolve();
  }

  const pieces = splitAnswer(mock.answer);
  const responses = pieces.map((piece, index) => {
    const outputSoFar = Math.round((usage.output * (index + 1)) / pieces.length);
    return geminiResponse(mock, model, piece, index === pieces.length - 1, usage, outputSoFar);
  });

  // Without alt=sse the API streams one JSON array instead of SSE events.
  if (url.searchParams.get('alt') !== 'sse') {
    sendJson(res, 200, responses);
    return Promise.resolve();
  }
  return sendSse(
    mock,
    res,
    responses.map((data) => ({ data })),
    { lineEnd: '\r\n' },
  );
}

const ROUTES = {
  openai: [
    { match: (m, p) => m === 'POST' && p === '/v1/chat/completions', reply: openAiChat },
    { match: (m, p) => m === 'POST' && p === '/v1/embeddings', reply: openAiEmbeddings },
    { match: (m, p) => m === 'GET' && p === '/v1/models', reply: openAiModels },
  ],
  anthropic: [{ match: (m, p) => m === 'POST' && p === '/v1/messages', reply: anthropicMessages }],
  google: [
    {
      match: (m, p) =>
        m === 'POST' && /^\/v1(beta)?\/models\/[^/:]+:(generateContent|streamGenerateContent)$/.test(p),
      reply: geminiGenerate,
    },
  ],
  mistral: [{ match: (m, p) => m === 'POST' && p === '/v1/chat/completions', reply: openAiChat }],
};
