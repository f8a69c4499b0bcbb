// Client token rate limits as the official SDKs see them: once a token is
// over its requests per minute, keyport responds with 429 with `retry-after: 1`,
// and the openai and @anthropic-ai/sdk clients wait that long on their own
// and succeed on the retry.

import { assertNoOutsideConnections } from '../lib/loopback-guard.js';

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';

import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';

import { runKeyport } from '../lib/keyport.js';
import { assertCleanShutdownAndNoLeaks, DIRECT, openSession } from '../lib/session.js';

/** Requests per minute of both limited tokens: one more every second after a burst of 60. */
const RPM = 60;
/** Requests sent at once to use up a token's burst. */
const BURST = RPM + 20;
/** Maximum bursts sent while waiting for `keyport serve` to load the limit. */
const MAX_BURSTS = 20;
const BURST_PAUSE_MS = 250;

const skip = DIRECT && 'needs the proxy';
let session;

before(async () => {
  if (DIRECT) return;
  session = await openSession({ keys: ['openai', 'anthropic'], tokens: ['openai-agent', 'anthropic-agent'] });
  for (const name of ['openai-agent', 'anthropic-agent']) {
    await runKeyport(session.context, ['token', 'limit', name, '--rpm', String(RPM)]);
  }
});

after(async () => {
  await session?.close();
});

/**
 * Sends bursts of `request` until one of them gets a 429, so the token's
 * bucket is full and the next request is rejected for about a second.
 */
async function exhaust(request) {
  for (let round = 0; round < MAX_BURSTS; round += 1) {
    const statuses = await Promise.all(Array.from({ length: BURST }, () => request().then((r) => r.status)));
    const unexpected = statuses.filter((status) => status !== 200 && status !== 429);
    assert.deepEqual(unexpected, [], 'a burst request failed with another status than 200 or 429');
    if (statuses.includes(429)) return;
    await sleep(BURST_PAUSE_MS);
  }
  assert.fail(`no 429 after ${MAX_BURSTS} bursts of ${BURST}: keyport serve did not apply --rpm ${RPM}`);
}

/** Returns a fetch that notes the status, retry-after header and timing of every attempt. */
function recordingFetch(attempts) {
  return async (url, init) => {
    const start = performance.now();
    const response = await fetch(url, init);
    attempts.push({
      start,
      end: performance.now(),
      status: response.status,
      retryAfter: response.headers.get('retry-after'),
    });
    return response;
  };
}

/** Checks that the SDK got one 429 with retry-after 1, waited, and succeeded. */
function assertBackedOff(attempts) {
  assert.equal(attempts.length, 2, `expected a 429 and one retry: ${JSON.stringify(attempts)}`);
  assert.equal(attempts[0].status, 429);
  assert.equal(attempts[0].retryAfter, '1');
  assert.equal(attempts[1].status, 200);
  const waited = attempts[1].start - attempts[0].end;
  console.log(`SDK waited ${waited.toFixed(0)} ms before its retry`);
  // Node timers never fire before their delay; 1 ms covers the rounding
  // between performance.now() and the timer clock.
  assert.ok(waited >= 999, `the SDK retried after ${waited.toFixed(0)} ms, before the 1 s retry-after`);
}

test('openai SDK backs off on the rate limit and succeeds', { skip }, async () => {
  const token = session.context.tokens['openai-agent'];
  const url = `${session.baseUrl('openai')}/chat/completions`;
  const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
  await exhaust(() =>
    fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body,
    }),
  );

  const attempts = [];
  const client = new OpenAI({
    apiKey: token,
    baseURL: session.baseUrl('openai'),
    maxRetries: 2,
    timeout: 20_000,
    fetch: recordingFetch(attempts),
  });
  const result = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
  assert.ok(result.choices.length > 0);
  assertBackedOff(attempts);
});

test('anthropic SDK backs off on the rate limit and succeeds', { skip }, async () => {
  const token = session.context.tokens['anthropic-agent'];
  const url = `${session.baseUrl('anthropic')}/v1/messages`;
  const body = JSON.stringify({ model: 'claude-3-5-haiku-latest', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
  await exhaust(() =>
    fetch(url, {
      method: 'POST',
      headers: { 'x-api-key': token, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body,
    }),
  );

  const attempts = [];
  const client = new Anthropic({
    apiKey: token,
    baseURL: session.baseUrl('anthropic'),
    maxRetries: 2,
    timeout: 20_000,
    fetch: recordingFetch(attempts),
  });
  const result = await client.messages.create({
    model: 'claude-3-5-haiku-latest',
    max_tokens: 16,
    messages: [{ role: 'user', content: 'hi' }],
  });
  assert.ok(result.content.length > 0);
  assertBackedOff(attempts);
});

test('proxy stops cleanly and leaks nothing', { skip }, async () => {
  await assertCleanShutdownAndNoLeaks(session);
});

test('no connections beyond loopback', () => {
  assertNoOutsideConnections();
});
