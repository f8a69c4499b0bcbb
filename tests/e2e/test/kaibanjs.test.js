// Real KaibanJS 0.23.1 one-agent teams through the keyport proxy, one per
// built-in provider that KaibanJS supports.

import { assertNoOutsideConnections } from '../lib/loopback-guard.js';

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { lastLogId, waitForLogRows } from '../lib/keyport.js';
import {
  assertLoggedCall,
  assertRequestLogHasNoSecrets,
  assertTotalsMatchRows,
  hasPricePrefix,
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

// KaibanJS starts its telemetry client when the module loads, so the opt-out
// must be set before the import.
process.env.KAIBAN_TELEMETRY_OPT_OUT = '1';
const { Agent, Task, Team } = await import('kaibanjs');

const FINAL_ANSWER = `Keyport relayed this final answer (${ANSWER_MARKER})`;
const TASK = `Reply with a short greeting (${PROMPT_MARKER}).`;

/** A model name per provider, because KaibanJS defaults every provider to gpt-4o-mini. */
const MODELS = {
  openai: 'gpt-4o-mini',
  anthropic: 'claude-3-5-haiku-20241022',
  google: 'gemini-2.0-flash',
  mistral: 'mistral-small-latest',
};

/**
 * The prices.toml entry that prices each model in MODELS. A dated name
 * such as claude-3-5-haiku-20241022 uses its family's entry.
 */
const PRICE_ENTRIES = {
  openai: 'gpt-4o-mini',
  anthropic: 'claude-3-5-haiku',
  google: 'gemini-2.0-flash',
  mistral: 'mistral-small-latest',
};

/** An OpenAI model without a price, whose calls must log an unknown cost. */
const UNPRICED_OPENAI_MODEL = 'gpt-3.5-turbo';

/** Name of the session's client token, which the log must name. */
const TOKEN_NAME = 'e2e-client';

let session;

before(async () => {
  // KaibanJS parses the assistant text as its ReAct JSON, and a `finalAnswer`
  // field ends the task in one iteration.
  session = await openSession({ tokens: [TOKEN_NAME], answer: JSON.stringify({ finalAnswer: FINAL_ANSWER }) });
});

after(async () => {
  await session?.close();
});

async function runOneAgentTeam(provider, model = MODELS[provider]) {
  const llmConfig = {
    provider,
    model,
    apiKey: session.apiKey(provider),
    apiBaseUrl: session.baseUrl(provider),
  };
  // The Mistral SDK in KaibanJS ignores `apiBaseUrl` (it becomes
  // `endpoint`) and reads its base URL from `serverURL`.
  if (provider === 'mistral') llmConfig.serverURL = session.baseUrl(provider);

  const agent = new Agent({
    name: 'Relay',
    role: 'Tester',
    goal: 'Answer in one step',
    background: 'An agent used to test the keyport proxy',
    llmConfig,
    maxIterations: 3,
  });
  const task = new Task({
    description: TASK,
    expectedOutput: 'A greeting',
    agent,
  });
  const team = new Team({ name: `keyport-e2e-${provider}`, agents: [agent], tasks: [task], logLevel: 'error' });
  return team.start();
}

/** What each provider's SDK inside KaibanJS sends, after key injection. */
const WIRE_CHECKS = {
  openai(request, mock) {
    assert.equal(request.url, '/v1/chat/completions');
    assert.equal(request.headers.authorization, `Bearer ${mock.canaryKey}`);
  },
  anthropic(request, mock) {
    assert.equal(request.url, '/v1/messages');
    assert.equal(request.headers['x-api-key'], mock.canaryKey);
    assert.equal(request.headers.authorization, undefined, 'an Authorization header reached the upstream');
    assert.equal(request.headers['anthropic-dangerous-direct-browser-access'], 'true');
  },
  google(request, mock) {
    assert.equal(request.url, `/v1beta/models/${MODELS.google}:generateContent`);
    assert.equal(request.headers['x-goog-api-key'], mock.canaryKey);
  },
  mistral(request, mock) {
    assert.equal(request.url, '/v1/chat/completions');
    assert.equal(request.body?.stream, true, 'KaibanJS streams Mistral replies');
    assert.equal(request.headers.authorization, `Bearer ${mock.canaryKey}`);
  },
};

/** Returns the id of the newest log row, or null in direct mode, which has no log. */
async function logPosition() {
  return session.direct ? null : lastLogId(session.context);
}

/** Asserts that the log has one new row after `afterId`, for the call `request`. */
async function assertTeamCallLogged(afterId, { provider, model, request, price }) {
  const [row] = await waitForLogRows(session.context, { afterId, count: 1 });
  assertLoggedCall(row, { provider, model, tokenName: TOKEN_NAME, request, price });
}

for (const provider of Object.keys(MODELS)) {
  test(`kaibanjs ${provider} team through proxy`, async () => {
    const mock = session.mocks[provider];
    const since = mock.requests.length;
    const logAfter = await logPosition();

    const output = await runOneAgentTeam(provider);

    assert.equal(output.status, 'FINISHED', `team ended as ${output.status}: ${JSON.stringify(output).slice(0, 500)}`);
    assert.equal(output.result, FINAL_ANSWER);
    const requests = mock.requests.slice(since);
    assert.equal(requests.length, 1, `expected one LLM call, the mock received ${requests.length}`);
    assertInjected(session, requests[0]);
    WIRE_CHECKS[provider](requests[0], mock);
    assert.equal(requests[0].body?.model ?? MODELS[provider], MODELS[provider]);
    assert.ok(
      requests[0].rawBody.includes(TASK),
      'the task description did not reach the upstream',
    );

    if (session.direct) return;
    const price = shippedPrice(provider, PRICE_ENTRIES[provider]);
    assert.ok(price, `prices.toml has no entry ${PRICE_ENTRIES[provider]} for ${provider}`);
    await assertTeamCallLogged(logAfter, { provider, model: MODELS[provider], request: requests[0], price });
  });
}

test('kaibanjs unpriced model logs unknown cost', { skip: DIRECT && 'needs the proxy' }, async () => {
  assert.equal(
    hasPricePrefix('openai', UNPRICED_OPENAI_MODEL),
    false,
    `prices.toml now prices ${UNPRICED_OPENAI_MODEL}. Pick another unpriced model.`,
  );
  const mock = session.mocks.openai;
  const since = mock.requests.length;
  const logAfter = await logPosition();

  const output = await runOneAgentTeam('openai', UNPRICED_OPENAI_MODEL);

  assert.equal(output.status, 'FINISHED', `team ended as ${output.status}: ${JSON.stringify(output).slice(0, 500)}`);
  const requests = mock.requests.slice(since);
  assert.equal(requests.length, 1, `expected one LLM call, the mock received ${requests.length}`);
  assert.equal(requests[0].body?.model, UNPRICED_OPENAI_MODEL);
  await assertTeamCallLogged(logAfter, { provider: 'openai', model: UNPRICED_OPENAI_MODEL, request: requests[0], price: null });
});

test('kaibanjs log totals match rows', { skip: DIRECT && 'needs the proxy' }, async () => {
  const rows = await assertTotalsMatchRows(session.context);
  assert.deepEqual(
    [...new Set(rows.map((row) => row.provider))].sort(),
    Object.keys(MODELS).sort(),
    'the log has no call for some provider',
  );
});

test('kaibanjs log contains no secrets', { skip: DIRECT && 'needs the proxy' }, async () => {
  await assertRequestLogHasNoSecrets(session);
});

test('kaibanjs sweep finds no secrets', { skip: DIRECT && 'needs the proxy' }, async () => {
  assertNoTokenUpstream(session);
  await assertCleanShutdownAndNoLeaks(session);
});

test('no connections beyond loopback', () => {
  assertNoOutsideConnections();
});
