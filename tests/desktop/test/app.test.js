// End-to-end test of the Keyport desktop app in a real window.
//
// tauri-driver starts the app built by `tauri build` under the X display
// that run.sh provides (xvfb-run). WebDriver then drives the UI through the
// whole first-run flow: create the vault, add an OpenAI key, test it
// against a mock upstream, and create a client token. A chat completion
// goes through the proxy and must show up on the Requests screen. Then the
// test locks the app and unlocks it with a wrong and then the right
// password. It then locks the app from the tray menu and with a screen
// lock signal, both over D-Bus, and quits it from the tray menu. A
// screenshot of each screen goes to
// DESKTOP_SCREENS_DIR. The test ends by sweeping everything the app left
// behind for the canary key.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import '../../e2e/lib/loopback-guard.js';
import { startMockUpstream } from '../../e2e/lib/mock-upstreams.js';
import { distinctImageBytes } from '../lib/png.js';
import { descendants, endProcesses, executableOf, freePort, startTauriDriver, tempDir } from '../lib/processes.js';
import { emitScreenLocked, Tray } from '../lib/tray.js';
import { isViewable, requestClose, topLevelWindow } from '../lib/window.js';
import { Session, testIdSelector, waitFor } from '../lib/webdriver.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const TARGET_DIR = process.env.CARGO_TARGET_DIR ? path.resolve(process.env.CARGO_TARGET_DIR) : path.join(REPO_ROOT, 'target');
const APP_BIN = process.env.KEYPORT_DESKTOP_BIN ?? path.join(TARGET_DIR, 'debug', 'keyport-desktop');
const TAURI_DRIVER = process.env.TAURI_DRIVER ?? path.join(os.homedir(), '.cargo', 'bin', 'tauri-driver');
const NATIVE_DRIVER = process.env.NATIVE_DRIVER ?? '/usr/bin/WebKitWebDriver';
const SCREENS_DIR = process.env.DESKTOP_SCREENS_DIR ?? path.join(REPO_ROOT, 'target', 'desktop-screens');

/**
 * Distinct byte values a screenshot's image data must exceed to count as
 * painted. A blank screen has about three; a screen with text has far more.
 */
const MIN_DISTINCT_BYTES = 16;

/** Time limit for one request through the proxy. */
const PROXY_REQUEST_TIMEOUT_MS = 10_000;

/** The OpenAI key stored in the vault. Only the mock upstream may ever see it. */
const CANARY_KEY = `sk-canary-${randomBytes(12).toString('hex')}`;
/** A second OpenAI key, stored under a label that a client token is pinned to. */
const PROJECT_KEY = `sk-canary-project-${randomBytes(12).toString('hex')}`;
const PROVIDER_KEYS = [CANARY_KEY, PROJECT_KEY];

/** A vault password that any strength estimate accepts. */
const PASSWORD = `Quartz-lantern-${randomBytes(6).toString('hex')}-harbour-Violet`;
const WRONG_PASSWORD = `${PASSWORD}-wrong`;

const MODEL = 'gpt-4o-mini';
const ANSWER = 'desktop mock answer';

/** The data folder Keyport uses without KEYPORT_DATA_DIR, in the real HOME. */
const REAL_DATA_DIR = path.join(os.homedir(), '.local', 'share', 'keyport');

// State shared by the setup, the flow and the clean-up.
const state = {
  root: null,
  dataDir: null,
  home: null,
  mock: null,
  proxyPort: null,
  driver: null,
  session: null,
  pageSources: new Map(),
  clientToken: null,
  realDataDirBefore: null,
};

before(async () => {
  assert.ok(process.env.DISPLAY, 'DISPLAY is not set; run this test through tests/desktop/run.sh, which starts Xvfb');
  await assertExecutable(APP_BIN, 'the desktop app; build it with `npm run tauri build -- --debug --bundles deb` or set KEYPORT_DESKTOP_BIN');
  await assertExecutable(TAURI_DRIVER, 'tauri-driver; install it with `cargo install tauri-driver --locked` or set TAURI_DRIVER');
  await assertExecutable(NATIVE_DRIVER, 'WebKitWebDriver; install the webkit2gtk-driver package or set NATIVE_DRIVER');
  await fs.mkdir(SCREENS_DIR, { recursive: true });
  state.realDataDirBefore = await statOrNull(REAL_DATA_DIR);

  state.root = await tempDir('keyport-desktop-e2e-');
  state.dataDir = path.join(state.root, 'data');
  state.home = path.join(state.root, 'home');
  await fs.mkdir(state.dataDir, { mode: 0o700 });
  await fs.mkdir(state.home);
  await fs.mkdir(path.join(state.root, 'tmp'));

  state.mock = await startMockUpstream('openai', { answer: ANSWER });
  state.mock.canaryKey = CANARY_KEY;
  state.mock.extraKeys = [PROJECT_KEY];
  state.proxyPort = await freePort();
  await fs.writeFile(
    path.join(state.dataDir, 'config.toml'),
    `[proxy]\nport = ${state.proxyPort}\n\n[providers.openai]\nbase_url = "${state.mock.url}/v1"\n`,
  );

  // The app inherits this environment through tauri-driver and
  // WebKitWebDriver. HOME and the XDG folders point into the temp folder,
  // so WebKit's caches and any stray default path stay out of the real
  // home and the check at the end can see them.
  const env = {
    ...process.env,
    KEYPORT_DATA_DIR: state.dataDir,
    HOME: state.home,
    XDG_CONFIG_HOME: path.join(state.home, '.config'),
    XDG_DATA_HOME: path.join(state.home, '.local', 'share'),
    XDG_CACHE_HOME: path.join(state.home, '.cache'),
    // The tray writes its icons to the temporary folder.
    TMPDIR: path.join(state.root, 'tmp'),
    RUST_LOG: process.env.RUST_LOG ?? 'info',
    // Should anything in the app bypass config.toml and aim at a real
    // provider, the request goes to this closed port instead: keyport-core
    // sends requests for other hosts through HTTPS_PROXY and connects to
    // 127.0.0.1 directly.
    HTTPS_PROXY: 'http://127.0.0.1:9',
    HTTP_PROXY: 'http://127.0.0.1:9',
    NO_PROXY: '127.0.0.1,localhost,ipc.localhost,tauri.localhost',
  };
  for (const name of ['https_proxy', 'http_proxy', 'no_proxy', 'ALL_PROXY', 'all_proxy']) delete env[name];
  state.driver = await startTauriDriver({
    tauriDriver: TAURI_DRIVER,
    nativeDriver: NATIVE_DRIVER,
    env,
    logFile: path.join(SCREENS_DIR, 'app-output.log'),
  });
});

after(async () => {
  if (state.session) {
    await state.session.delete().catch(() => {});
  }
  if (state.driver) {
    const leftovers = await descendants(state.driver.pid);
    await endProcesses([...leftovers, state.driver.pid]);
  }
  await state.mock?.close();
  if (state.root && process.env.KEEP_TEMP !== '1') {
    await fs.rm(state.root, { recursive: true, force: true });
  }
});

test('desktop app: vault, key, token, proxy, log, lock', async (t) => {
  const step = (name) => t.diagnostic(name);
  try {
    await runFlow(step);
  } catch (error) {
    if (state.session) await saveScreen('failure').catch(() => {});
    throw error;
  }
});

async function runFlow(step) {
  step('start the app');
  const started = Date.now();
  state.session = await Session.create(state.driver.url, APP_BIN);
  const session = state.session;
  assert.ok((await appProcesses()).length > 0, `no ${path.basename(APP_BIN)} process runs under tauri-driver`);

  step('first run: create the vault');
  await session.byTestId('screen-create', { timeoutMs: 30_000 });
  step(`window ready after ${Date.now() - started} ms`);
  await assertAppUsesDataDir();
  await saveScreen('01-create-vault');
  await (await session.byTestId('create-password')).type(PASSWORD);
  await (await session.byTestId('create-confirm')).type(PASSWORD);
  const createSubmit = await session.byTestId('create-submit');
  await waitFor('the Create vault button to become enabled for a strong password', () => createSubmit.enabled());
  await saveScreen('02-create-vault-filled');
  await createSubmit.click();
  await waitForStatus(/Serving on/);
  await session.byTestId('screen-keys');
  await saveScreen('03-keys-empty');

  step('keys: add the OpenAI key');
  await selectOption(await session.byTestId('key-provider'), 'openai');
  const keyInput = await session.byTestId('key-value');
  await keyInput.type(CANARY_KEY);
  await (await session.byTestId('key-submit')).click();
  const keyRow = await session.waitForVisible(`${testIdSelector('key-row')}[data-provider="openai"]`);
  assert.equal(await keyInput.property('value'), '', 'the API key field still contains the key after saving');
  const rowText = await keyRow.text();
  assert.ok(!rowText.includes(CANARY_KEY), `the key row shows the whole key: ${rowText}`);
  await saveScreen('04-keys-added');

  step('keys: test the key against the mock');
  const requestsBeforeTest = state.mock.requests.length;
  await (await keyRow.find(testIdSelector('key-test'))).click();
  const result = await waitFor('the key test result', async () => {
    const cell = await session.find(testIdSelector('key-test-result'));
    const text = cell ? (await cell.text()).trim() : '';
    return text === '' || text.startsWith('Testing') ? null : text;
  });
  assert.match(result, /^OK: HTTP 200/, `the key test did not pass: ${result}`);
  const resultCell = await session.find(testIdSelector('key-test-result'));
  const modelRequest = state.mock.requests[requestsBeforeTest];
  assert.ok(modelRequest, 'the key test sent nothing to the mock upstream');
  assert.equal(modelRequest.url, '/v1/models', 'the key test did not list models');
  assert.equal(modelRequest.headers.authorization, `Bearer ${CANARY_KEY}`, 'the key test did not send the stored key');
  await saveScreen('05-key-test-ok', { show: resultCell });

  step('connect: create a client token');
  await (await session.byTestId('nav-connect')).click();
  await session.byTestId('screen-connect');
  await saveScreen('06-connect');
  await (await session.byTestId('token-name')).type('desktop-e2e');
  await (await session.byTestId('token-submit')).click();
  const tokenField = await session.byTestId('token-value');
  state.clientToken = await tokenField.property('value');
  assert.match(state.clientToken, /^kp_/, 'the token field does not show a Keyport client token');
  await saveScreen('07-token-created');
  await (await session.byTestId('token-done')).click();
  await waitFor('the token to disappear from the screen', async () => (await session.find(testIdSelector('token-value'))) === null);
  const afterDone = await session.source();
  assert.ok(!afterDone.includes(state.clientToken), 'the client token is still in the page after Done');

  step('proxy: send a chat completion with the client token');
  const port = await proxyPortFromStatus();
  assert.equal(port, state.proxyPort, 'the status bar shows another port than config.toml sets');
  const requestsBeforeChat = state.mock.requests.length;
  const reply = await chatCompletion(port, state.clientToken);
  assert.equal(reply.status, 200, `the proxy answered ${reply.status}: ${reply.text}`);
  assert.equal(JSON.parse(reply.text).choices[0].message.content, ANSWER);
  const upstream = state.mock.requests[requestsBeforeChat];
  assert.ok(upstream, 'the chat completion never reached the mock upstream');
  assert.equal(upstream.url, '/v1/chat/completions');
  assert.equal(upstream.headers.authorization, `Bearer ${CANARY_KEY}`, 'the proxy did not inject the stored key');
  const seenUpstream = JSON.stringify([upstream.url, upstream.headers, upstream.rawBody]);
  assert.ok(!seenUpstream.includes(state.clientToken), 'the client token reached the upstream');

  step('requests: the row shows provider, model, status and tokens');
  await (await session.byTestId('nav-requests')).click();
  await session.byTestId('screen-requests');
  const row = await session.waitForVisible(testIdSelector('log-row'));
  const cells = await waitFor('a complete log row', async () => {
    const texts = await cellTexts(row);
    return texts.length >= 7 && texts[4] !== '' ? texts : null;
  });
  const usage = upstream.sent.usage;
  const described = cells.join(' | ');
  assert.equal(cells[1], 'desktop-e2e', `token column: ${described}`);
  assert.equal(cells[2], 'openai', `provider column: ${described}`);
  assert.equal(cells[3], MODEL, `model column: ${described}`);
  assert.equal(cells[4], '200', `status column: ${described}`);
  assert.equal(cells[6], `${usage.input} / ${usage.output}`, `tokens column: ${described}`);
  await saveScreen('08-requests');

  step('connect: a token pinned to a labelled key sends that key');
  await (await session.byTestId('nav-keys')).click();
  await session.byTestId('screen-keys');
  await selectOption(await session.byTestId('key-provider'), 'openai');
  await (await session.byTestId('key-label')).type('project');
  await (await session.byTestId('key-value')).type(PROJECT_KEY);
  await (await session.byTestId('key-submit')).click();
  await session.waitForVisible(`${testIdSelector('key-row')}[data-label="project"]`);
  await (await session.byTestId('nav-connect')).click();
  await session.byTestId('screen-connect');
  const pinSelect = await session.waitForVisible(`${testIdSelector('token-pin')}[data-provider="openai"]`);
  await (await session.byTestId('token-name')).type('pinned-e2e');
  await selectOption(pinSelect, 'project');
  await (await session.byTestId('token-submit')).click();
  const pinnedToken = await (await session.byTestId('token-value')).property('value');
  await (await session.byTestId('token-done')).click();
  const pinnedRow = `${testIdSelector('token-row')}[data-name="pinned-e2e"]`;
  await waitFor('the pinned token in the list', async () => {
    const keys = await session.find(`${pinnedRow} ${testIdSelector('token-keys')}`);
    return keys && (await keys.text()).trim() === 'openai: project';
  });
  await saveScreen('09-token-pinned');
  const requestsBeforePinned = state.mock.requests.length;
  const pinnedReply = await chatCompletion(port, pinnedToken);
  assert.equal(pinnedReply.status, 200, `the pinned token got ${pinnedReply.status}: ${pinnedReply.text}`);
  assert.equal(
    state.mock.requests[requestsBeforePinned]?.headers.authorization,
    `Bearer ${PROJECT_KEY}`,
    'the pinned token did not get the key labelled project',
  );

  step('connect: changing the pin back to the default key');
  await (await session.find(`${pinnedRow} ${testIdSelector('token-pins-edit')}`)).click();
  await selectOption(await session.waitForVisible(`${pinnedRow} ${testIdSelector('token-row-pin')}`), '');
  await (await session.find(`${pinnedRow} ${testIdSelector('token-pins-save')}`)).click();
  await waitFor('the token to show the default keys', async () => {
    const keys = await session.find(`${pinnedRow} ${testIdSelector('token-keys')}`);
    return keys && (await keys.text()).trim() === 'Default keys';
  });
  // The proxy reloads tokens.json within about a second.
  await waitFor('the unpinned token to get the default key', async () => {
    const before = state.mock.requests.length;
    const reply = await chatCompletion(port, pinnedToken);
    return reply.status === 200 && state.mock.requests[before]?.headers.authorization === `Bearer ${CANARY_KEY}`;
  });
  await sweepPageSource('09-token-unpinned');

  await (await session.byTestId('nav-settings')).click();
  await session.byTestId('screen-settings');
  await saveScreen('10-settings');

  step('lock: the proxy stops');
  await (await session.byTestId('lock-button')).click();
  await session.byTestId('screen-unlock');
  await saveScreen('11-locked');
  await assertProxyStopped(port, 'after Lock');

  step('unlock: a wrong password shows the error');
  await (await session.byTestId('unlock-password')).type(WRONG_PASSWORD);
  await (await session.byTestId('unlock-submit')).click();
  const unlockError = await waitFor('the wrong-password message', async () => {
    const region = await session.find(testIdSelector('unlock-error'));
    const text = region ? (await region.text()).trim() : '';
    return text === '' ? null : text;
  });
  assert.match(unlockError, /wrong password/i);
  await session.byTestId('screen-unlock');
  await saveScreen('12-unlock-wrong-password');

  step('unlock: the right password starts the proxy again');
  await unlockApp();
  await saveScreen('13-unlocked');
  const again = await chatCompletion(port, state.clientToken);
  assert.equal(again.status, 200, `after unlock the proxy answered ${again.status}: ${again.text}`);

  step('tray: the menu shows where the proxy serves');
  const [appPid] = await appProcesses();
  const tray = await waitFor('the tray icon on the session bus', () => Tray.find(appPid));
  const serving = `Serving on 127.0.0.1:${port}`;
  await waitForTrayMenu(tray, 'a serving state line', (entries) => entries[0].label === serving && !entries[0].enabled);
  const labels = (await tray.menu()).filter((entry) => !entry.separator).map((entry) => entry.label);
  assert.deepEqual(labels, [serving, 'Open', 'Lock', 'Quit']);
  assert.equal((await tray.entry('Lock')).enabled, true, 'Lock is disabled while the proxy serves');
  const servingIcon = await trayIconImage(tray);

  step('tray: Lock locks the vault');
  await tray.click('Lock');
  await session.byTestId('screen-unlock');
  await assertProxyStopped(port, 'after Lock in the tray menu');
  await waitForTrayMenu(tray, 'the Locked state line', (entries) => entries[0].label === 'Locked');
  assert.equal((await tray.entry('Lock')).enabled, false, 'Lock is still enabled while the vault is locked');
  assert.ok(!(await trayIconImage(tray)).equals(servingIcon), 'the tray icon did not change when the vault locked');
  await unlockApp();
  await waitForTrayMenu(tray, 'a serving state line again', (entries) => entries[0].label === serving);
  assert.ok((await trayIconImage(tray)).equals(servingIcon), 'the tray icon did not change back after unlock');

  step('screen lock: the screensaver signal locks the vault');
  await emitScreenLocked();
  await session.byTestId('screen-unlock');
  await assertProxyStopped(port, 'after the screen locked');
  await unlockApp();
  await sweepPageSource('14-final');

  step('window: closing it keeps the proxy serving in the tray');
  const windowId = await waitFor('the Keyport window on the X display', () => topLevelWindow('Keyport'));
  assert.equal(await isViewable(windowId), true, 'the Keyport window is not shown before the close');
  await requestClose(windowId);
  await waitFor('the window to hide after the close request', async () => !(await isViewable(windowId)));
  const whileHidden = await chatCompletion(port, state.clientToken);
  assert.equal(whileHidden.status, 200, `with the window closed the proxy answered ${whileHidden.status}: ${whileHidden.text}`);
  assert.equal((await appProcesses()).length > 0, true, 'the app exited when its window was closed');
  assert.equal((await tray.menu())[0].label, serving, 'the tray stopped showing the serving state after the close');

  step('tray: Open shows the window again');
  await tray.click('Open');
  await waitFor('the window to show after Open in the tray menu', () => isViewable(windowId));
  await session.byTestId('lock-button');

  step('tray: Quit ends the app');
  await tray.click('Quit');
  await waitFor('the app to exit after Quit in the tray menu', async () => (await appProcesses()).length === 0, {
    timeoutMs: 15_000,
  });
  await assertProxyStopped(port, 'after Quit');

  step('end the drivers');
  await endApp();

  step('sweep: the canary key is nowhere in clear');
  await assertNoLeaks();
  await assertRealDataDirUntouched();
}

/**
 * Fails before the vault exists if the app ignores KEYPORT_DATA_DIR: it
 * would then read no config.toml, and a key test would go to the
 * provider's real API instead of the mock.
 */
async function assertAppUsesDataDir() {
  const status = await state.session.executeAsync(
    `const done = arguments[arguments.length - 1];
     window.__TAURI_INTERNALS__.invoke('app_status').then(done, (error) => done({ error: String(error) }));`,
  );
  assert.equal(status?.dataDir, state.dataDir, `app_status returned ${JSON.stringify(status)}; the app ignores KEYPORT_DATA_DIR`);
  assert.equal(status.vault, 'missing', 'a new data folder must have no vault');
}

/**
 * Types the password on the unlock screen and waits until the proxy
 * serves.
 */
async function unlockApp() {
  await (await state.session.byTestId('unlock-password')).type(PASSWORD);
  await (await state.session.byTestId('unlock-submit')).click();
  await waitForStatus(/Serving on/);
}

/** Waits until requests through the proxy on `port` fail. */
async function assertProxyStopped(port, when) {
  const refused = await waitFor(`the proxy to stop serving ${when}`, async () => {
    const attempt = await chatCompletion(port, state.clientToken).catch((error) => ({ error }));
    return attempt.error || attempt.status !== 200 ? attempt : null;
  });
  assert.ok(refused.error || refused.status !== 200, `the proxy still serves ${when}`);
}

/**
 * Returns the PNG file that the tray icon shows. On Linux the app writes
 * each icon it sets to a new file and passes that file's path as IconName.
 */
async function trayIconImage(tray) {
  return fs.readFile(await tray.property('IconName'));
}

/** Waits until the tray menu's entries satisfy `check`, and returns them. */
function waitForTrayMenu(tray, description, check) {
  return waitFor(`the tray menu to show ${description}`, async () => {
    const entries = await tray.menu();
    return check(entries) ? entries : null;
  });
}

/**
 * Ends the session, then tauri-driver and anything it left, by PID. The
 * session may already be gone when the app quit on its own.
 */
async function endApp() {
  await state.session.delete().catch(() => {});
  state.session = null;
  const exited = await waitFor(
    'the app to exit after the session ended',
    async () => (await appProcesses()).length === 0,
    { timeoutMs: 10_000 },
  ).catch(() => false);
  if (!exited) await endProcesses(await appProcesses());

  const driverPid = state.driver.pid;
  await endProcesses([...(await descendants(driverPid)), driverPid]);
  await state.driver.exited;
}

/** Returns the PIDs of app processes that tauri-driver started. */
async function appProcesses() {
  const binary = await fs.realpath(APP_BIN);
  const pids = [];
  for (const pid of await descendants(state.driver.pid)) {
    if ((await executableOf(pid)) === binary) pids.push(pid);
  }
  return pids;
}

/**
 * Saves a screenshot of the current screen, after scrolling `show` into
 * view, and sweeps its page source. Waits for two animation frames first
 * and retries while the screenshot is one flat colour, because a screen
 * that was just mounted may not be painted yet.
 */
async function saveScreen(name, { show = null } = {}) {
  if (show) await state.session.execute("arguments[0].scrollIntoView({ block: 'center' });", [show]);
  const png = await waitFor(`a painted screenshot of ${name}`, async () => {
    await state.session.executeAsync(
      'const done = arguments[arguments.length - 1]; requestAnimationFrame(() => requestAnimationFrame(() => done(null)));',
    );
    const shot = await state.session.screenshot();
    return distinctImageBytes(shot) > MIN_DISTINCT_BYTES ? shot : null;
  });
  await fs.writeFile(path.join(SCREENS_DIR, `${name}.png`), png);
  await sweepPageSource(name);
}

/** Checks the page source of a screen for the key and keeps it for the final sweep. */
async function sweepPageSource(name) {
  const source = await state.session.source();
  state.pageSources.set(name, source);
  for (const key of PROVIDER_KEYS) {
    assert.ok(!source.includes(key), `the page source of ${name} contains a provider key`);
  }
}

function waitForStatus(pattern) {
  return waitFor(
    `the status bar to match ${pattern}`,
    async () => {
      const element = await state.session.find(testIdSelector('status-text'));
      const text = element ? await element.text() : '';
      return pattern.test(text) ? text : null;
    },
    { timeoutMs: 30_000 },
  );
}

/** Reads the proxy port from the status bar ("Serving on 127.0.0.1:PORT"). */
async function proxyPortFromStatus() {
  const text = await waitForStatus(/Serving on/);
  const match = text.match(/127\.0\.0\.1:(\d+)/);
  assert.ok(match, `the status bar names no 127.0.0.1 address: ${text}`);
  return Number(match[1]);
}

/** Picks `value` in a <select> by clicking its option. */
async function selectOption(select, value) {
  const option = await waitFor(`the option ${value}`, () => select.find(`option[value="${value}"]`));
  await option.click();
  assert.equal(await select.property('value'), value, `the provider list did not select ${value}`);
}

async function cellTexts(row) {
  const texts = [];
  for (const cell of await row.findAll('td')) texts.push((await cell.text()).trim());
  return texts;
}

async function chatCompletion(port, token) {
  const response = await fetch(`http://127.0.0.1:${port}/llm/openai/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Say hello.' }] }),
    signal: AbortSignal.timeout(PROXY_REQUEST_TIMEOUT_MS),
  });
  return { status: response.status, text: await response.text() };
}

/**
 * Searches the page sources, the output of the app and the drivers, and
 * every file in the data folder for the canary key. The files include the
 * request log and the encrypted snapshot. The output and the files must
 * not contain the client token either.
 */
async function assertNoLeaks() {
  const leaks = [];
  for (const [name, source] of state.pageSources) {
    if (PROVIDER_KEYS.some((key) => source.includes(key))) leaks.push(`page source of ${name}: provider key`);
  }

  const output = state.driver.output();
  assert.ok(output.length > 0, 'the app and drivers printed nothing, so the output sweep would prove nothing');
  if (PROVIDER_KEYS.some((key) => output.includes(key))) leaks.push('app or driver output: provider key');
  if (output.includes(state.clientToken)) leaks.push('app or driver output: client token');

  const files = await listFiles(state.dataDir);
  assert.ok(files.some((file) => file.endsWith('vault.stronghold')), `no vault.stronghold in ${state.dataDir}`);
  assert.ok(files.some((file) => path.basename(file).startsWith('requests.sqlite3')), `no request log in ${state.dataDir}`);
  for (const file of files) {
    const bytes = await fs.readFile(file);
    const name = path.relative(state.dataDir, file);
    if (PROVIDER_KEYS.some((key) => bytes.includes(key))) leaks.push(`${name}: provider key`);
    if (bytes.includes(state.clientToken)) leaks.push(`${name}: client token`);
  }
  assert.deepEqual(leaks, [], `secrets found in clear:\n${leaks.join('\n')}`);
}

/** Checks that the default data folders stayed untouched, in the temp HOME and the real one. */
async function assertRealDataDirUntouched() {
  for (const dir of [path.join(state.home, '.local', 'share', 'keyport'), path.join(state.home, '.config', 'keyport')]) {
    assert.equal(await statOrNull(dir), null, `the app created ${dir} although KEYPORT_DATA_DIR was set`);
  }
  assert.deepEqual(await statOrNull(REAL_DATA_DIR), state.realDataDirBefore, `the real data folder ${REAL_DATA_DIR} changed during the test`);
}

async function statOrNull(file) {
  try {
    const stat = await fs.stat(file);
    return { mtimeMs: stat.mtimeMs, ctimeMs: stat.ctimeMs };
  } catch {
    return null;
  }
}

async function listFiles(dir) {
  const files = [];
  for (const entry of await fs.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) files.push(path.join(entry.parentPath ?? entry.path, entry.name));
  }
  return files;
}

async function assertExecutable(file, what) {
  try {
    await fs.access(file, fs.constants.X_OK);
  } catch {
    assert.fail(`${file} is missing or not executable: ${what}`);
  }
}
