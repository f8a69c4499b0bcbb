// `keyport key import --rewrite --set-base-urls` on a real project. The
// project's code names no key and no base URL. After the one command, its
// official OpenAI, Anthropic and Google SDK calls and a KaibanJS team reach
// the mocks through the proxy, with the keys its `.env` file used to contain.

import '../lib/loopback-guard.js';

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { cleanup, findSecretLeaks, prepareKeyport, runKeyport, startServe, stopServe } from '../lib/keyport.js';
import { CANARY_KEYS, closeAll, startMockUpstream } from '../lib/mock-upstreams.js';

const E2E_DIR = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const PROJECT_SCRIPT = path.join(E2E_DIR, 'fixtures', 'env-project.mjs');
const LOOPBACK_GUARD = path.join(E2E_DIR, 'lib', 'loopback-guard.js');

/** Maximum run time of the project script. */
const PROJECT_TIMEOUT_MS = 45_000;

const FINAL_ANSWER = 'The project reached its provider through Keyport';

const PROVIDERS = ['openai', 'anthropic', 'google'];

let mocks;
let context;

before(async () => {
  const answer = JSON.stringify({ finalAnswer: FINAL_ANSWER });
  mocks = Object.fromEntries(
    await Promise.all(PROVIDERS.map(async (provider) => [provider, await startMockUpstream(provider, { answer })])),
  );
  context = await prepareKeyport({ mocks, keys: [], tokens: [] });
});

after(async () => {
  await cleanup(context);
  if (mocks) await closeAll(mocks);
});

/** Returns a TCP port on 127.0.0.1 that was free a moment ago. */
async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Runs the project script with only the variables of its `.env` file. */
async function runProject(projectDir) {
  const child = spawn(
    process.execPath,
    ['--env-file=.env', '--import', LOOPBACK_GUARD, PROJECT_SCRIPT],
    {
      cwd: projectDir,
      env: { PATH: process.env.PATH, HOME: context.home, KAIBAN_TELEMETRY_OPT_OUT: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), PROJECT_TIMEOUT_MS);
  const code = await new Promise((resolve) => child.on('close', resolve));
  clearTimeout(timer);
  assert.equal(code, 0, `the project script failed (exit ${code})\nstdout: ${stdout}\nstderr: ${stderr}`);
  return { result: JSON.parse(stdout.trim().split('\n').at(-1)), stderr };
}

test('one import command moves a project onto the proxy', async () => {
  const port = await freePort();
  const configPath = path.join(context.dataDir, 'config.toml');
  await fs.appendFile(configPath, `\n[proxy]\nport = ${port}\n`);

  const projectDir = path.join(context.root, 'kaiban-project');
  await fs.mkdir(projectDir);
  const envPath = path.join(projectDir, '.env');
  const original = [
    '# Keys for the agents',
    `OPENAI_API_KEY=${CANARY_KEYS.openai}`,
    `ANTHROPIC_API_KEY="${CANARY_KEYS.anthropic}"`,
    `GEMINI_API_KEY=${CANARY_KEYS.google}`,
    'LOG_LEVEL=info',
    '',
  ].join('\n');
  await fs.writeFile(envPath, original, { mode: 0o600 });

  const imported = await runKeyport(context, ['key', 'import', '--from-env', envPath, '--rewrite', '--set-base-urls']);
  assert.match(imported.stderr, /Next: run `keyport serve`\./);

  const rewritten = await fs.readFile(envPath, 'utf8');
  for (const provider of PROVIDERS) {
    assert.ok(!rewritten.includes(CANARY_KEYS[provider]), `the ${provider} key is still in the .env file`);
  }
  for (const line of [
    `OPENAI_BASE_URL=http://127.0.0.1:${port}/llm/openai`,
    `ANTHROPIC_BASE_URL=http://127.0.0.1:${port}/llm/anthropic`,
    `GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:${port}/llm/google`,
    'LOG_LEVEL=info',
  ]) {
    assert.ok(rewritten.split('\n').includes(line), `${line} missing from the rewritten file:\n${rewritten}`);
  }
  const token = rewritten.match(/^OPENAI_API_KEY=(kp_\w+)$/m)?.[1];
  assert.ok(token, `no client token in the rewritten file:\n${rewritten}`);

  await startServe(context, { port });
  assert.equal(context.serve.port, port);
  const since = Object.fromEntries(PROVIDERS.map((provider) => [provider, mocks[provider].requests.length]));

  const { result } = await runProject(projectDir);
  assert.equal(result.openai, mocks.openai.answer);
  assert.equal(result.anthropic, mocks.anthropic.answer);
  assert.equal(result.gemini, mocks.google.answer);
  assert.equal(result.kaiban.status, 'FINISHED');
  assert.equal(result.kaiban.result, FINAL_ANSWER);

  // The mocks return 401 for anything but the vault key, so every request
  // they recorded carried the key Keyport injected, and never the client token.
  const seen = Object.fromEntries(PROVIDERS.map((provider) => [provider, mocks[provider].requests.slice(since[provider])]));
  assert.equal(seen.openai.length, 2, 'the OpenAI SDK call and the KaibanJS call');
  assert.equal(seen.anthropic.length, 1);
  assert.equal(seen.google.length, 1);
  for (const request of Object.values(seen).flat()) {
    assert.ok(request.authorized, `${request.method} ${request.url} reached a mock without the vault key`);
    assert.ok(!JSON.stringify(request.headers).includes(token), 'the client token reached an upstream');
  }

  const stopped = await stopServe(context);
  assert.equal(stopped.code, 0);
  const leaks = await findSecretLeaks(context, Object.values(CANARY_KEYS));
  assert.deepEqual(leaks, []);
});
