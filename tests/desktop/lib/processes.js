// Starting and ending the processes of the desktop test: tauri-driver, and
// through it WebKitWebDriver and the app. Everything is ended by PID, and
// every wait has a deadline.

import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { waitFor } from './webdriver.js';

/** Time a process gets to exit after SIGTERM before it gets SIGKILL. */
const TERM_GRACE_MS = 5_000;

/** Returns a port that was free on 127.0.0.1 a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts `command` with `args` and `env`, recording its stdout and stderr
 * in memory and in `logFile`. Returns { child, output, exited }, where
 * `output()` returns everything printed so far and `exited` resolves with
 * { code, signal } once the process ends.
 */
export async function startRecorded(command, args, { env, logFile }) {
  // The log opens first: awaiting it after spawn() could miss the 'spawn'
  // event that the code below waits for.
  const log = await fs.open(logFile, 'w');
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks = [];
  const record = (chunk) => {
    chunks.push(chunk);
    void log.write(chunk);
  };
  child.stdout.on('data', record);
  child.stderr.on('data', record);
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const spawnError = new Promise((_, reject) => child.once('error', reject));
  await Promise.race([new Promise((resolve) => child.once('spawn', resolve)), spawnError]);
  void exited.then(() => log.close());
  return { child, exited, output: () => Buffer.concat(chunks).toString('utf8') };
}

/**
 * Starts tauri-driver on 127.0.0.1 with free ports and waits until its
 * WebDriver endpoint responds. `env` goes to tauri-driver, and through
 * WebKitWebDriver to the app it starts.
 */
export async function startTauriDriver({ tauriDriver, nativeDriver, env, logFile }) {
  const port = await freePort();
  const nativePort = await freePort();
  const args = ['--port', String(port), '--native-port', String(nativePort), '--native-driver', nativeDriver];
  const driver = await startRecorded(tauriDriver, args, { env, logFile });
  const url = `http://127.0.0.1:${port}`;

  let exited = null;
  void driver.exited.then((status) => (exited = status));
  await waitFor(`tauri-driver to listen on ${url}`, async () => {
    if (exited) throw new Error(`tauri-driver exited with ${JSON.stringify(exited)}:\n${driver.output()}`);
    const response = await fetch(`${url}/status`, { signal: AbortSignal.timeout(2_000) });
    return response.ok;
  });
  return { ...driver, url, pid: driver.child.pid };
}

/** Returns the PIDs of every live descendant of `pid`, read from /proc. */
export async function descendants(pid) {
  const parents = new Map();
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await fs.readFile(`/proc/${entry}/stat`, 'utf8');
      // The command name can contain spaces and brackets, so the fields
      // after it are counted from the last ")".
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parents.set(Number(entry), Number(fields[1]));
    } catch {
      // The process ended between readdir and readFile.
    }
  }
  const found = [];
  const queue = [pid];
  while (queue.length > 0) {
    const parent = queue.shift();
    for (const [child, ppid] of parents) {
      if (ppid === parent) {
        found.push(child);
        queue.push(child);
      }
    }
  }
  return found;
}

/** Returns the executable path of `pid`, or null once it has ended. */
export async function executableOf(pid) {
  try {
    return await fs.readlink(`/proc/${pid}/exe`);
  } catch {
    return null;
  }
}

/** Returns true while `pid` exists and is not a zombie. */
export async function isAlive(pid) {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/**
 * Sends SIGTERM to each of `pids`, then SIGKILL to those still alive after
 * a grace period. Returns the PIDs that needed SIGKILL.
 */
export async function endProcesses(pids) {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // Already gone.
    }
  }
  const deadline = Date.now() + TERM_GRACE_MS;
  let alive = pids;
  while (Date.now() < deadline) {
    alive = (await Promise.all(pids.map(async (pid) => ((await isAlive(pid)) ? pid : null)))).filter((pid) => pid !== null);
    if (alive.length === 0) return [];
    await sleep(100);
  }
  for (const pid of alive) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Ended just now.
    }
  }
  return alive;
}

/** Makes a fresh temporary folder whose name starts with `prefix`. */
export function tempDir(prefix) {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}
