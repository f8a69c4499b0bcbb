// Mock provider upstreams for the end-to-end tests.
//
// Each mock is a plain `http` server on 127.0.0.1:0 that records every
// request and answers in its provider's wire format, streamed (SSE) or not,
// with usage fields. A request that does not carry exactly the vault canary
// key gets a 401 in the provider's error shape, so a test fails whenever the
// proxy forwards the client token or forgets to inject the key.

import http from 'node:http';

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

const USAGE = Object.freeze({ input: 11, output: 7 });

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
    /** Every request received, in order: { method, url, headers, rawBody, body, authorized }. */
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
  mock.requests.push({
    method: req.method,
    url: req.url,
    headers: { ...req.headers },
    rawBody,
    body,
    authorized,
  });

  if (!authorized) {
    sendJson(res, 401, unauthorizedBody(mock.provider));
    return;
  }

  const route = ROUTES[mock.provider].find((candidate) => candidate.match(req.method, url.pathname));
  if (!route) {
    sendJson(res, 404, notFoundBody(mock.provider, `${req.method} ${url.pathname}`));
    return;
  }
  await route.reply({ mock, url, body, res });
}

function isAuthorized(mock, headers, url) {
  const key = mock.canaryKey;
  switch (mock.provider) {
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

function sendJson(res, status, value) {
  const text = JSON.stringify(value);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
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
async function sendSse(mock, res, events, { lineEnd = '\n' } = {}) {
  res.writeHead(200, {
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

function openAiChat({ mock, body, res }) {
  const id = `chatcmpl-mock${mock.requests.length}`;
  const model = body?.model ?? 'unknown-model';
  const created = nowSeconds();
  const usage = {
    prompt_tokens: USAGE.input,
    completion_tokens: USAGE.output,
    total_tokens: USAGE.input + USAGE.output,
  };

  if (!body?.stream) {
    const message =
      mock.provider === 'mistral'
        ? { role: 'assistant', content: mock.answer, tool_calls: null, prefix: false }
        : { role: 'assistant', content: mock.answer, refusal: null, annotations: [] };
    sendJson(res, 200, {
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [{ index: 0, message, logprobs: null, finish_reason: 'stop' }],
      usage,
      ...(mock.provider === 'openai' ? { system_fingerprint: 'fp_mock' } : {}),
    });
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
  } else {
    events.push({ data: chunk({}, 'stop') });
    if (body.stream_options?.include_usage) {
      events.push({ data: { id, object: 'chat.completion.chunk', created, model, choices: [], usage } });
    }
  }
  events.push({ data: '[DONE]' });
  return sendSse(mock, res, events);
}

function openAiEmbeddings({ body, res }) {
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
  sendJson(res, 200, {
    object: 'list',
    data,
    model: body?.model ?? 'unknown-model',
    usage: { prompt_tokens: USAGE.input, total_tokens: USAGE.input },
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

function anthropicMessages({ mock, body, res }) {
  const id = `msg_mock${mock.requests.length}`;
  const model = body?.model ?? 'unknown-model';
  const usage = {
    input_tokens: USAGE.input,
    output_tokens: USAGE.output,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 0,
  };

  if (!body?.stream) {
    sendJson(res, 200, {
      id,
      type: 'message',
      role: 'assistant',
      model,
      content: [{ type: 'text', text: mock.answer }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage,
    });
    return Promise.resolve();
  }

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
        usage: { output_tokens: USAGE.output },
      },
    },
    { event: 'message_stop', data: { type: 'message_stop' } },
  );
  return sendSse(mock, res, events);
}

// --- Google Gemini -----------------------------------------------------------

function geminiResponse(mock, model, text, finished) {
  return {
    candidates: [
      {
        content: { parts: [{ text }], role: 'model' },
        ...(finished ? { finishReason: 'STOP' } : {}),
        index: 0,
      },
    ],
    usageMetadata: {
      promptTokenCount: USAGE.input,
      candidatesTokenCount: USAGE.output,
      totalTokenCount: USAGE.input + USAGE.output,
    },
    modelVersion: model,
    responseId: `mock${mock.requests.length}`,
  };
}

function geminiGenerate({ mock, url, res }) {
  const match = url.pathname.match(/\/models\/([^/:]+):(generateContent|streamGenerateContent)$/);
  const model = match[1];

  if (match[2] === 'generateContent') {
    sendJson(res, 200, geminiResponse(mock, model, mock.answer, true));
    return Promise.resolve();
  }

  const pieces = splitAnswer(mock.answer);
  const responses = pieces.map((piece, index) =>
    geminiResponse(mock, model, piece, index === pieces.length - 1),
  );

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
