// Harness that runs the real `keyport` binary for the end-to-end tests.
//
// Every run gets a fresh temporary folder with its own data dir and HOME, a
// config.toml that points each provider at a mock upstream, a vault holding
// the canary keys, client tokens, and a `keyport serve --port 0` process.
// Everything each keyport process printed is kept for the canary sweep.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { CANARY_KEYS, configBaseUrl } from './mock-upstreams.js';

const E2E_DIR = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const REPO_ROOT = path.resolve(E2E_DIR, '..', '..');

/** The keyport binary under test. */
export const KEYPORT_BIN = process.env.KEYPORT_BIN ?? path.join(REPO_ROOT, 'target', 'debug', 'keyport');

/** Vault password for every test vault. It protects only canary keys. */
export const VAULT_PASSWORD = 'e2e-vault-password';

/**
 * Log filter for keyport processes. Debug logging everywhere makes the
 * canary sweep stricter: no log line at any level may carry a key.
 */
const RUST_LOG = process.env.E2E_RUST_LOG ?? 'debug,keyport=trace,keyport_core=trace';

/** Maximum run time of one CLI command such as `keyport init`. */
const COMMAND_TIMEOUT_MS = 60_000;
/** Maximum wait for `keyport serve` to print its address. */
const SERVE_START_TIMEOUT_MS = 30_000;
/** Maximum wait for `keyport serve` to exit after SIGTERM. */
const SERVE_STOP_TIMEOUT_MS = 10_000;

/** Rows per `keyport logs` call. The CLI caps `--limit` at 1000. */
const LOG_PAGE_LIMIT = 1000;
/** Maximum wait for the proxy's log writer to store the row of a finished call. */
const LOG_WAIT_TIMEOUT_MS = 5_000;
const LOG_POLL_INTERVAL_MS = 50;
/** Gap between the two reads of `lastLogId`: well above the writer's 10 ms batch window. */
const LOG_SETTLE_MS = 100;

const LISTENING_PATTERN = /http:\/\/127\.0\.0\.1:(\d+)/;

/** Serve processes still running, killed by PID if this process exits first. */
const runningServes = new Set();
process.on('exit', () => {
  for (const child of runningServes) child.kill('SIGKILL');
});

/**
 * Creates a data dir whose config.toml points at `mocks`, runs `keyport
 * init`, stores the canary key of each provider in `keys`, creates one
 * client token per name in `tokens` and `revoked`, and revokes the latter.
 * Returns the context that the other functions take.
 */
export async function prepareKeyport({ mocks, keys = Object.keys(mocks), tokens = ['e2e-client'], revoked = [] }) {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'keyport-e2e-'));
  const context = {
    root,
    dataDir: path.join(root, 'data'),
    home: path.join(root, 'home'),
    /** Output of every keyport process: { args, stdout, stderr, tokenOutput }. */
    outputs: [],
    tokens: {},
    serve: null,
  };
  await fs.mkdir(context.dataDir);
  await fs.mkdir(context.home);
  await fs.writeFile(path.join(context.dataDir, 'config.toml'), configToml(mocks));

  await runKeyport(context, ['init']);
  for (const provider of keys) {
    // A trailing newline, as `printenv KEY | keyport key set` sends.
    await runKeyport(context, ['key', 'set', provider], { input: `${CANARY_KEYS[provider]}\n` });
  }
  for (const name of [...tokens, ...revoked]) {
    context.tokens[name] = await createToken(context, name);
  }
  for (const name of revoked) {
    await revokeToken(context, name);
  }
  return context;
}

/** Builds config.toml text that sends every provider in `mocks` to its mock. */
export function configToml(mocks) {
  return Object.values(mocks)
    .map((mock) => `[providers.${mock.provider}]\nbase_url = "${configBaseUrl(mock)}"\n`)
    .join('\n');
}

/** Runs `keyport token create NAME` and returns the token it prints. */
export async function createToken(context, name) {
  const result = await runKeyport(context, ['token', 'create', name], { tokenOutput: true });
  const token = result.stdout.trim();
  if (!/^kp_\S+$/.test(token)) {
    throw new Error(
      `keyport token create ${name} printed ${JSON.stringify(result.stdout.slice(0, 80))} on stdout; expected only a token starting with kp_`,
    );
  }
  return token;
}

/** Runs `keyport token revoke NAME`. */
export async function revokeToken(context, name) {
  await runKeyport(context, ['token', 'revoke', name]);
}

/**
 * Runs one keyport command to completion with `--data-dir` and the password
 * in the environment. Rejects on a non-zero exit or a timeout unless
 * `allowFailure` is set, with the command's output in the message.
 */
export async function runKeyport(context, args, { input = '', allowFailure = false, tokenOutput = false } = {}) {
  const fullArgs = ['--data-dir', context.dataDir, ...args];
  const child = spawn(KEYPORT_BIN, fullArgs, { env: keyportEnv(context), stdio: 'pipe' });
  const record = { args, stdout: '', stderr: '', tokenOutput };
  context.outputs.push(record);
  child.stdout.on('data', (chunk) => (record.stdout += chunk));
  child.stderr.on('data', (chunk) => (record.stderr += chunk));
  // A command that fails before reading stdin closes the pipe early. Its
  // exit code reports the failure, so the write error is ignored.
  child.stdin.on('error', () => {});
  child.stdin.end(input);

  const timer = setTimeout(() => child.kill('SIGKILL'), COMMAND_TIMEOUT_MS);
  const { code, signal, error } = await exitOf(child);
  clearTimeout(timer);
  if (error) throw error;

  const result = { code, signal, stdout: record.stdout, stderr: record.stderr };
  if (!allowFailure && code !== 0) {
    const reason = signal ? `was killed by ${signal} (time limit ${COMMAND_TIMEOUT_MS} ms)` : `exited with ${code}`;
    throw new Error(`keyport ${args.join(' ')} ${reason}\nstdout: ${record.stdout}\nstderr: ${record.stderr}`);
  }
  return result;
}

/**
 * Runs `keyport logs --json` with the filter options in `args` and returns
 * the rows, oldest first, and the raw output.
 */
export async function readRequestLog(context, args = []) {
  const { stdout } = await runKeyport(context, ['logs', '--json', '--limit', String(LOG_PAGE_LIMIT), ...args]);
  const rows = stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      try {
        return JSON.parse(line);
      } catch (error) {
        throw new Error(`keyport logs --json printed a line that is not JSON (${error.message}): ${line.slice(0, 200)}`);
      }
    });
  assert.ok(rows.length < LOG_PAGE_LIMIT, `the log has ${LOG_PAGE_LIMIT} rows or more, so some may be missing from this read`);
  return { rows, stdout };
}

/**
 * Returns the id of the newest row in the request log, or 0 when it is
 * empty, once two reads 100 ms apart agree. Rows of earlier requests can
 * still be queued when a test starts (the writer batches them for up to
 * 10 ms), and a row written after this read would count as the test's own.
 */
export async function lastLogId(context) {
  const newest = async () => (await readRequestLog(context)).rows.reduce((max, row) => Math.max(max, row.id), 0);
  const deadline = Date.now() + LOG_WAIT_TIMEOUT_MS;
  let previous = await newest();
  for (;;) {
    await sleep(LOG_SETTLE_MS);
    const current = await newest();
    if (current === previous || Date.now() > deadline) return current;
    previous = current;
  }
}

/**
 * Polls the request log until it has `count` rows newer than `afterId` and
 * returns them, oldest first. The proxy writes rows from a background queue
 * after each response ends, so a row can appear shortly after the client
 * has received the response. Rejects when it finds too few rows within the
 * time limit, or more rows unless `atLeast` is set.
 */
export async function waitForLogRows(context, { afterId, count = 1, atLeast = false }) {
  const deadline = Date.now() + LOG_WAIT_TIMEOUT_MS;
  let rows = [];
  for (;;) {
    rows = (await readRequestLog(context)).rows.filter((row) => row.id > afterId);
    if (rows.length >= count || Date.now() > deadline) break;
    await sleep(LOG_POLL_INTERVAL_MS);
  }
  const expected = `${atLeast ? 'at least ' : ''}${count} new request log rows after id ${afterId} within ${LOG_WAIT_TIMEOUT_MS} ms`;
  const message = `expected ${expected}, found ${rows.length}: ${JSON.stringify(rows)}`;
  if (atLeast) {
    assert.ok(rows.length >= count, message);
  } else {
    assert.equal(rows.length, count, message);
  }
  return rows;
}

/**
 * Starts `keyport serve --port PORT` (a free port when 0) and resolves once
 * it prints its address. Sets `context.serve` to { process, port, url, record }.
 */
export async function startServe(context, { port: wantedPort = 0 } = {}) {
  const serveArgs = ['serve', '--port', String(wantedPort)];
  const child = spawn(KEYPORT_BIN, ['--data-dir', context.dataDir, ...serveArgs], {
    env: keyportEnv(context),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const record = { args: serveArgs, stdout: '', stderr: '', tokenOutput: false };
  context.outputs.push(record);
  runningServes.add(child);
  const exited = exitOf(child);
  exited.then(() => runningServes.delete(child));
  context.serve = { process: child, exited, port: 0, url: '', record };

  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`keyport serve printed no address within ${SERVE_START_TIMEOUT_MS} ms\nstdout: ${record.stdout}\nstderr: ${record.stderr}`));
    }, SERVE_START_TIMEOUT_MS);
    child.stdout.on('data', (chunk) => {
      record.stdout += chunk;
      const match = record.stdout.match(LISTENING_PATTERN);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    child.stderr.on('data', (chunk) => (record.stderr += chunk));
    exited.then(({ code, signal, error }) => {
      clearTimeout(timer);
      reject(error ?? new Error(`keyport serve exited (code ${code}, signal ${signal}) before listening\nstdout: ${record.stdout}\nstderr: ${record.stderr}`));
    });
  }).catch(async (error) => {
    child.kill('SIGKILL');
    await exited;
    throw error;
  });

  context.serve.port = port;
  context.serve.url = `http://127.0.0.1:${port}`;
  return context.serve;
}

/**
 * Sends `signal` to the serve process by PID and waits for it to exit.
 * Resolves to { code, signal, killed }, where `killed` is true when it had
 * to be killed after the time limit. Safe to call twice.
 */
export async function stopServe(context, signal = 'SIGTERM') {
  const serve = context.serve;
  if (!serve) return null;
  if (serve.stopped) return serve.stopped;

  if (serve.process.exitCode === null && serve.process.signalCode === null) {
    process.kill(serve.process.pid, signal);
  }
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    serve.process.kill('SIGKILL');
  }, SERVE_STOP_TIMEOUT_MS);
  const exit = await serve.exited;
  clearTimeout(timer);

  serve.stopped = { code: exit.code, signal: exit.signal, killed };
  return serve.stopped;
}

/**
 * Stops the proxy if it still runs and deletes the temporary folder. With
 * E2E_KEEP_TMP set, keeps the folder and writes everything keyport printed
 * to `keyport-output.txt` in it.
 */
export async function cleanup(context) {
  if (!context) return;
  await stopServe(context);
  if (process.env.E2E_KEEP_TMP) {
    const text = context.outputs
      .map((record) => `$ keyport ${record.args.join(' ')}\n--- stdout\n${record.stdout}\n--- stderr\n${record.stderr}\n`)
      .join('\n');
    await fs.writeFile(path.join(context.root, 'keyport-output.txt'), text);
    process.stderr.write(`kept ${context.root}\n`);
    return;
  }
  await fs.rm(context.root, { recursive: true, force: true });
}

/** Base URL a client uses for `provider` through the proxy. */
export function proxyBaseUrl(context, provider) {
  return `${context.serve.url}/llm/${provider}`;
}

/**
 * Searches everything keyport printed and every file in the data dir for
 * each of `needles` (name to text). Returns the hits as "name in place"
 * strings. The stdout of `token create` is skipped, since printing the new
 * token there is its job.
 */
export async function findSecretLeaks(context, needles) {
  return [...findInOutputs(context, needles), ...(await findInDataFiles(context, needles))];
}

/** Searches the stdout and stderr of every keyport process, as `findSecretLeaks`. */
export function findInOutputs(context, needles) {
  const hits = [];
  for (const record of context.outputs) {
    const command = `keyport ${record.args.join(' ')}`;
    for (const [name, value] of Object.entries(needles)) {
      if (!record.tokenOutput && record.stdout.includes(value)) hits.push(`${name} in stdout of ${command}`);
      if (record.stderr.includes(value)) hits.push(`${name} in stderr of ${command}`);
    }
  }
  return hits;
}

/** Searches the bytes of every file in the data dir, as `findSecretLeaks`. */
export async function findInDataFiles(context, needles) {
  const hits = [];
  for (const file of await listFiles(context.dataDir)) {
    const bytes = await fs.readFile(file);
    for (const [name, value] of Object.entries(needles)) {
      if (bytes.includes(Buffer.from(value, 'utf8'))) hits.push(`${name} in ${path.relative(context.root, file)}`);
    }
  }
  return hits;
}

/** Lists every regular file below `dir`, recursively. */
export async function listFiles(dir) {
  const entries = await fs.readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath ?? entry.path, entry.name));
}

function keyportEnv(context) {
  const env = { ...process.env };
  // The data dir comes from --data-dir only, and HOME points into the
  // temporary folder so a stray default path cannot touch the real one.
  delete env.KEYPORT_DATA_DIR;
  delete env.KEYPORT_NEW_PASSWORD;
  return {
    ...env,
    HOME: context.home,
    XDG_DATA_HOME: path.join(context.home, '.local', 'share'),
    XDG_CONFIG_HOME: path.join(context.home, '.config'),
    KEYPORT_PASSWORD: VAULT_PASSWORD,
    RUST_LOG,
    NO_COLOR: '1',
  };
}

/**
 * Resolves to { code, signal, error } once the child exited and its output
 * pipes closed, so the captured output is complete. Never rejects: a child
 * that could not start resolves with `error` set.
 */
function exitOf(child) {
  return new Promise((resolve) => {
    child.once('error', (error) => {
      const hint =
        error.code === 'ENOENT' ? '; build it with `cargo build -p keyport-cli` or set KEYPORT_BIN' : '';
      resolve({ code: null, signal: null, error: new Error(`cannot run ${KEYPORT_BIN}: ${error.message}${hint}`) });
    });
    child.once('close', (code, signal) => resolve({ code, signal, error: null }));
  });
}
