// Measures the Keyport desktop app: start-up times and memory at idle.
//
// Run through bench/desktop.sh, which provides the X display. Two kinds of
// launch are measured, each BENCH_ROUNDS times with a fresh process:
//
// - direct: the app starts on its own, as from the desktop entry, with a
//   vault already created. Times launch until its window is mapped
//   (xwininfo), then waits BENCH_SETTLE_SECONDS and reads the memory of the
//   app and its WebKit child processes at the unlock screen.
// - webdriver: tauri-driver starts the app, because the app unlocks only
//   through its UI. Times launch until the unlock screen is visible, and
//   the Unlock click until GET /healthz on the proxy returns 200 with
//   the vault unlocked, then reads the memory at idle with the proxy serving.
//
// Everything runs in a temporary data folder and HOME, and every process
// is ended by PID.

import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

import { descendants, endProcesses, executableOf, freePort, startTauriDriver, tempDir } from '../tests/desktop/lib/processes.js';
import { Session, waitFor } from '../tests/desktop/lib/webdriver.js';

const run = promisify(execFile);

const APP_BIN = requiredEnv('KEYPORT_DESKTOP_BIN');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SETTLE_SECONDS = Number(process.env.BENCH_SETTLE_SECONDS ?? 10);
const TAURI_DRIVER = process.env.TAURI_DRIVER ?? path.join(os.homedir(), '.cargo', 'bin', 'tauri-driver');
const NATIVE_DRIVER = process.env.NATIVE_DRIVER ?? '/usr/bin/WebKitWebDriver';
const WINDOW_TITLE = 'Keyport';
const PASSWORD = 'Bench-quartz-lantern-harbour-violet-42';

/** Interval between two /healthz or window polls while timing. */
const POLL_MS = 5;

async function main() {
  // The data folder is also the default one under the temporary HOME, so
  // the numbers do not depend on how the app reads KEYPORT_DATA_DIR (the
  // desktop test checks that).
  const root = await tempDir('keyport-desktop-bench-');
  const home = path.join(root, 'home');
  const dataDir = path.join(home, '.local', 'share', 'keyport');
  await fs.mkdir(dataDir, { mode: 0o700, recursive: true });
  const port = await freePort();
  await fs.writeFile(path.join(dataDir, 'config.toml'), `[proxy]\nport = ${port}\n`);
  const env = {
    ...process.env,
    KEYPORT_DATA_DIR: dataDir,
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, '.config'),
    XDG_DATA_HOME: path.join(home, '.local', 'share'),
    XDG_CACHE_HOME: path.join(home, '.cache'),
  };

  const results = { direct: [], webdriver: [] };
  try {
    await withDriver(env, root, async (driver) => createVault(driver));
    for (let round = 1; round <= ROUNDS; round += 1) {
      results.direct.push(await directRound(env, root));
      results.webdriver.push(await withDriver(env, root, (driver) => webdriverRound(driver, port)));
      process.stderr.write(`round ${round}/${ROUNDS} done\n`);
    }
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
  printResults(results);
}

/** Starts tauri-driver, runs `body(driver)`, and ends tauri-driver and its children by PID. */
async function withDriver(env, root, body) {
  const driver = await startTauriDriver({
    tauriDriver: TAURI_DRIVER,
    nativeDriver: NATIVE_DRIVER,
    env,
    logFile: path.join(root, 'driver.log'),
  });
  try {
    return await body(driver);
  } finally {
    await endProcesses([...(await descendants(driver.pid)), driver.pid]);
  }
}

async function createVault(driver) {
  const session = await Session.create(driver.url, APP_BIN);
  try {
    await (await session.byTestId('create-password', { timeoutMs: 30_000 })).type(PASSWORD);
    await (await session.byTestId('create-confirm')).type(PASSWORD);
    const submit = await session.byTestId('create-submit');
    await waitFor('the Create vault button to become enabled', () => submit.enabled());
    await submit.click();
    await session.byTestId('lock-button', { timeoutMs: 30_000 });
  } finally {
    await session.delete();
  }
}

async function directRound(env, root) {
  const log = await fs.open(path.join(root, 'direct.log'), 'a');
  const started = performance.now();
  const child = spawn(APP_BIN, [], { env, stdio: ['ignore', log.fd, log.fd] });
  try {
    await waitFor(
      `a window titled ${WINDOW_TITLE}`,
      async () => {
        if (child.exitCode !== null) throw new Error(`the app exited with ${child.exitCode}`);
        const { stdout } = await run('xwininfo', ['-root', '-tree']);
        return stdout.includes(`"${WINDOW_TITLE}"`);
      },
      { timeoutMs: 60_000, intervalMs: POLL_MS },
    );
    const windowMs = performance.now() - started;
    await sleep(SETTLE_SECONDS * 1000);
    return { windowMs, memory: await memoryOf(child.pid) };
  } finally {
    await endProcesses([...(await descendants(child.pid)), child.pid]);
    await log.close();
  }
}

async function webdriverRound(driver, port) {
  const started = performance.now();
  const session = await Session.create(driver.url, APP_BIN);
  try {
    const password = await session.byTestId('unlock-password', { timeoutMs: 30_000 });
    const windowMs = performance.now() - started;
    await password.type(PASSWORD);
    const submit = await session.byTestId('unlock-submit');

    const clicked = performance.now();
    await submit.click();
    await waitFor(
      `GET /healthz on port ${port} to report an unlocked vault`,
      async () => {
        const response = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1_000) });
        return response.ok && (await response.json()).vault === 'unlocked';
      },
      { timeoutMs: 30_000, intervalMs: POLL_MS },
    );
    const unlockMs = performance.now() - clicked;

    await sleep(SETTLE_SECONDS * 1000);
    const app = await appPid(driver);
    return { windowMs, unlockMs, memory: await memoryOf(app) };
  } finally {
    await session.delete().catch(() => {});
  }
}

async function appPid(driver) {
  const binary = await fs.realpath(APP_BIN);
  for (const pid of await descendants(driver.pid)) {
    if ((await executableOf(pid)) === binary) return pid;
  }
  throw new Error(`no ${binary} process runs under tauri-driver`);
}

/**
 * Sums RSS and PSS over `pid` and its descendants (WebKitWebProcess,
 * WebKitNetworkProcess). PSS shares pages mapped by several processes
 * between them, so the PSS sum does not count shared libraries twice.
 */
async function memoryOf(pid) {
  const pids = [pid, ...(await descendants(pid))];
  const processes = [];
  for (const one of pids) {
    const status = await fs.readFile(`/proc/${one}/status`, 'utf8').catch(() => '');
    const rollup = await fs.readFile(`/proc/${one}/smaps_rollup`, 'utf8').catch(() => '');
    // /proc/PID/status truncates names to 15 characters; cmdline does not.
    const cmdline = await fs.readFile(`/proc/${one}/cmdline`, 'utf8').catch(() => '');
    const name = path.basename(cmdline.split('\0')[0] || '?');
    processes.push({ name, rssKib: kib(status, 'VmRSS'), pssKib: kib(rollup, 'Pss') });
  }
  return {
    processes,
    rssKib: processes.reduce((sum, one) => sum + one.rssKib, 0),
    pssKib: processes.reduce((sum, one) => sum + one.pssKib, 0),
  };
}

function kib(text, field) {
  const match = text.match(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm'));
  return match ? Number(match[1]) : 0;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function range(values) {
  return `${Math.round(Math.min(...values))}–${Math.round(Math.max(...values))}`;
}

function mib(kibValue) {
  return (kibValue / 1024).toFixed(1);
}

function printResults({ direct, webdriver }) {
  const rows = [
    ['launch → window mapped (direct)', direct.map((r) => r.windowMs), 'ms'],
    ['launch → unlock screen visible (tauri-driver)', webdriver.map((r) => r.windowMs), 'ms'],
    ['Unlock click → /healthz returns unlocked', webdriver.map((r) => r.unlockMs), 'ms'],
  ];
  console.log(`Binary: ${APP_BIN}`);
  console.log(`Rounds: ${ROUNDS}, settle time before memory: ${SETTLE_SECONDS} s\n`);
  console.log('| time | median | range |');
  console.log('| --- | ---: | ---: |');
  for (const [name, values, unit] of rows) {
    console.log(`| ${name} | ${Math.round(median(values))} ${unit} | ${range(values)} ${unit} |`);
  }

  console.log('\n| memory at idle | processes | RSS sum, median | PSS sum, median |');
  console.log('| --- | --- | ---: | ---: |');
  for (const [name, results] of [
    ['locked, unlock screen (direct)', direct],
    ['unlocked, proxy serving (tauri-driver)', webdriver],
  ]) {
    const names = results[0].memory.processes.map((one) => `${one.name} ${mib(one.pssKib)}`).join(', ');
    const rss = median(results.map((r) => r.memory.rssKib));
    const pss = median(results.map((r) => r.memory.pssKib));
    console.log(`| ${name} | ${names} (PSS MiB, first round) | ${mib(rss)} MiB | ${mib(pss)} MiB |`);
  }
}

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set; run bench/desktop.sh`);
  return value;
}

await main();
