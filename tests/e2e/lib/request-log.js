// Checks on keyport's request log, read through `keyport logs`, against
// what the mock upstreams sent and the shipped price table.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { findInDataFiles, listFiles, readRequestLog, REPO_ROOT, runKeyport } from './keyport.js';
import { ANSWER_MARKER, PROMPT_MARKER, secretNeedles } from './session.js';

/** The price table compiled into keyport. */
const PRICES_PATH = path.join(REPO_ROOT, 'crates', 'keyport-core', 'data', 'prices.toml');

/** Relative tolerance for costs, which keyport sums as floating point. */
const COST_TOLERANCE = 1e-9;

/**
 * Returns the shipped price entry `entry` of `provider` from prices.toml as
 * { input, output, cached_input? } in US dollars per million tokens, or
 * null when the table has no such entry. Reads only flat entries of the
 * form `"name" = { field = number, … }`, which is enough for the models the
 * tests use.
 */
export function shippedPrice(provider, entry) {
  let section = null;
  for (const line of fs.readFileSync(PRICES_PATH, 'utf8').split('\n')) {
    const header = line.match(/^\[providers\.([\w-]+)\]/);
    if (header) {
      section = header[1];
      continue;
    }
    const match = line.match(/^"([^"]+)"\s*=\s*\{(.*)\}\s*$/);
    if (section !== provider || match?.[1] !== entry) continue;

    // Long-context prices apply only above a prompt size the tests never reach.
    const fields = match[2].split('long_context')[0];
    const price = {};
    for (const [, name, value] of fields.matchAll(/(\w+)\s*=\s*([\d.]+)/g)) price[name] = Number(value);
    return price;
  }
  return null;
}

/** Returns whether prices.toml has an entry for `provider` whose name is a prefix of `model`. */
export function hasPricePrefix(provider, model) {
  let section = null;
  for (const line of fs.readFileSync(PRICES_PATH, 'utf8').split('\n')) {
    const header = line.match(/^\[providers\.([\w-]+)\]/);
    if (header) section = header[1];
    const name = line.match(/^"([^"]+)"/)?.[1];
    if (section === provider && name && model.startsWith(name)) return true;
  }
  return false;
}

/**
 * Returns the cost in US dollars of `usage` ({ input, output, cached }, input
 * including cached tokens) at `price`: uncached input at the input price,
 * cached input at the cached price and output at the output price.
 */
export function expectedCost(price, usage) {
  const uncached = usage.input - usage.cached;
  const cachedPrice = usage.cached > 0 ? price.cached_input : 0;
  assert.ok(cachedPrice !== undefined, 'the price entry has no cached_input price, so a cached call has no cost');
  return (uncached * price.input + usage.cached * cachedPrice + usage.output * price.output) / 1_000_000;
}

/** Asserts that `actual` is within floating-point rounding of `expected`. */
export function assertCost(actual, expected, label) {
  assert.equal(typeof actual, 'number', `${label}: cost_usd is ${actual}, expected about ${expected}`);
  assert.ok(actual > 0, `${label}: cost_usd is ${actual}, expected a positive cost`);
  assert.ok(
    Math.abs(actual - expected) <= expected * COST_TOLERANCE,
    `${label}: cost_usd is ${actual}, expected ${expected}`,
  );
}

/**
 * Asserts that `row` logs the successful call `request` that a mock
 * received: provider, model, status, token name, stream flag, the token
 * counts and request id the mock sent, and the cost at `price` (null for
 * an unpriced model, which must log an unknown cost).
 */
export function assertLoggedCall(row, { provider, model, tokenName, request, price }) {
  const label = `log row ${row.id}`;
  const sent = request.sent.usage;
  assert.ok(sent, `the mock's reply to ${request.method} ${request.url} carried no usage`);

  assert.equal(row.provider, provider, `${label}: provider`);
  assert.equal(row.model, model, `${label}: model`);
  assert.equal(row.status, 200, `${label}: status`);
  assert.equal(row.error_kind, null, `${label}: error_kind`);
  assert.equal(row.usage_note, null, `${label}: usage_note`);
  assert.equal(row.token_name, tokenName, `${label}: token_name`);
  const streamed = request.body?.stream === true || request.url.includes(':streamGenerateContent');
  assert.equal(row.streamed, streamed, `${label}: streamed`);
  assert.ok(row.path.startsWith(`/llm/${provider}/`), `${label}: path ${row.path} is not below /llm/${provider}/`);
  assert.ok(!row.path.includes('?'), `${label}: path ${row.path} has a query string`);
  assert.ok(row.latency_ms >= 0, `${label}: latency_ms is ${row.latency_ms}`);

  assert.equal(row.input_tokens, sent.input, `${label}: input_tokens`);
  assert.equal(row.output_tokens, sent.output, `${label}: output_tokens`);
  // Mistral reports no cached count and Gemini leaves out a zero one, so an
  // unknown cached count in the log counts as zero here.
  assert.equal(row.cached_tokens ?? 0, sent.cached, `${label}: cached_tokens`);
  if (request.sent.requestId) {
    assert.equal(row.upstream_request_id, request.sent.requestId, `${label}: upstream_request_id`);
  }

  if (price) {
    assertCost(row.cost_usd, expectedCost(price, sent), label);
  } else {
    assert.equal(row.cost_usd, null, `${label}: an unpriced model must log an unknown cost`);
  }
}

/**
 * Asserts that `keyport logs totals --by provider --json` equals the sums of
 * the rows `keyport logs --json` prints. Rows are read before and after the
 * totals, and the check repeats when a row arrived in between.
 */
export async function assertTotalsMatchRows(context) {
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const before = await readRequestLog(context);
    const { stdout } = await runKeyport(context, ['logs', 'totals', '--by', 'provider', '--json']);
    const after = await readRequestLog(context);
    if (before.stdout !== after.stdout) continue;

    const totals = JSON.parse(stdout);
    const expected = sumByProvider(after.rows);
    assert.deepEqual(
      totals.map((total) => total.key).sort(),
      expected.map((total) => total.key).sort(),
      'totals and rows name different providers',
    );
    for (const want of expected) {
      const got = totals.find((total) => total.key === want.key);
      assert.deepEqual({ ...got, cost_usd: 0 }, { ...want, cost_usd: 0 }, `totals for ${want.key}`);
      if (want.cost_usd === 0) {
        assert.equal(got.cost_usd, 0, `cost_usd total for ${want.key}`);
      } else {
        assertCost(got.cost_usd, want.cost_usd, `cost_usd total for ${want.key}`);
      }
    }
    return after.rows;
  }
  assert.fail('rows kept arriving in the request log while the totals were read');
}

/**
 * Sums rows per provider as the totals define them. Unknown counts and
 * costs add nothing and are counted in usage_unknown and cost_unknown, and
 * a call with an error kind or without a status counts as failed.
 */
function sumByProvider(rows) {
  const groups = new Map();
  for (const row of rows) {
    if (!groups.has(row.provider)) {
      groups.set(row.provider, {
        key: row.provider,
        requests: 0,
        failed: 0,
        input_tokens: 0,
        output_tokens: 0,
        cached_tokens: 0,
        cache_write_tokens: 0,
        usage_unknown: 0,
        cost_usd: 0,
        cost_unknown: 0,
      });
    }
    const group = groups.get(row.provider);
    group.requests += 1;
    if (row.error_kind !== null || row.status === null) group.failed += 1;
    group.input_tokens += row.input_tokens ?? 0;
    group.output_tokens += row.output_tokens ?? 0;
    group.cached_tokens += row.cached_tokens ?? 0;
    group.cache_write_tokens += row.cache_write_tokens ?? 0;
    if (row.input_tokens === null || row.output_tokens === null) group.usage_unknown += 1;
    group.cost_usd += row.cost_usd ?? 0;
    if (row.cost_usd === null) group.cost_unknown += 1;
  }
  return [...groups.values()];
}

/**
 * Asserts that no canary key, client token, prompt text or reply text is
 * in the output of `keyport logs --json` or of `keyport logs export` as CSV
 * and JSON Lines. Also searches the bytes of every file in the data dir,
 * the SQLite log and its write-ahead log included.
 */
export async function assertRequestLogHasNoSecrets(session) {
  const context = session.context;
  const needles = { ...secretNeedles(session), 'prompt text': PROMPT_MARKER, 'reply text': ANSWER_MARKER };

  const { rows, stdout: json } = await readRequestLog(context);
  assert.ok(rows.length > 0, 'the request log is empty, so searching it would prove nothing');
  const outputs = { 'keyport logs --json': json };
  for (const format of ['csv', 'jsonl']) {
    const { stdout } = await runKeyport(context, ['logs', 'export', '--format', format]);
    const lines = stdout.split('\n').filter((line) => line !== '');
    const expectedLines = rows.length + (format === 'csv' ? 1 : 0);
    assert.equal(lines.length, expectedLines, `keyport logs export --format ${format} printed ${lines.length} lines for ${rows.length} rows`);
    outputs[`keyport logs export --format ${format}`] = stdout;
  }

  const hits = [];
  for (const [command, text] of Object.entries(outputs)) {
    for (const [name, value] of Object.entries(needles)) {
      if (text.includes(value)) hits.push(`${name} in the output of ${command}`);
    }
  }
  const files = await listFiles(context.dataDir);
  assert.ok(
    files.some((file) => path.basename(file) === 'requests.sqlite3'),
    `no requests.sqlite3 in ${context.dataDir}; the search would miss the log`,
  );
  hits.push(...(await findInDataFiles(context, needles)));
  assert.deepEqual(hits, [], `the request log contains text it must not store:\n${hits.join('\n')}`);
}
