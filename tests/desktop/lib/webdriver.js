// A small W3C WebDriver client over fetch, for tauri-driver.
//
// tauri-driver forwards the standard WebDriver protocol to WebKitWebDriver,
// so the few endpoints the desktop test needs fit in one file and the test
// has no npm dependencies. Every HTTP call has a time limit, and every wait
// polls with a deadline, so a stuck driver or webview fails the test instead
// of hanging it.

import { setTimeout as sleep } from 'node:timers/promises';

/** Time limit for one WebDriver HTTP call. */
const COMMAND_TIMEOUT_MS = 20_000;

/** Time limit for creating a session, which starts the app. */
const SESSION_TIMEOUT_MS = 60_000;

/** Default deadline for `waitFor` and the element waits built on it. */
export const WAIT_TIMEOUT_MS = 15_000;

/** Default delay between two polls in `waitFor`. */
const POLL_INTERVAL_MS = 100;

/** The W3C key under which element references are returned. */
const ELEMENT_KEY = 'element-6066-11e4-a52e-4f735466cecf';

/** Error returned by the driver, with the W3C error code and the command that failed. */
export class WebDriverError extends Error {
  constructor(command, error, message) {
    super(`WebDriver ${command} failed: ${error}: ${message}`);
    this.name = 'WebDriverError';
    this.error = error;
  }
}

/**
 * Polls `check` until it returns a value other than undefined, null or
 * false, and returns that value. Errors from `check` count as "not yet" and
 * the last one is reported when the deadline passes.
 */
export async function waitFor(description, check, { timeoutMs = WAIT_TIMEOUT_MS, intervalMs = POLL_INTERVAL_MS } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError = null;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== null && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const cause = lastError ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}${cause}`);
    }
    await sleep(intervalMs);
  }
}

/** One WebDriver session against `driverUrl`, for example http://127.0.0.1:4444. */
export class Session {
  constructor(driverUrl, sessionId) {
    this.driverUrl = driverUrl;
    this.id = sessionId;
  }

  /**
   * Starts the Tauri app at `application` in a new session. tauri-driver
   * needs `browserName: "wry"` and the binary path in `tauri:options`.
   */
  static async create(driverUrl, application) {
    const capabilities = {
      alwaysMatch: { browserName: 'wry', 'tauri:options': { application } },
    };
    const value = await send(driverUrl, 'POST', '/session', { capabilities }, SESSION_TIMEOUT_MS);
    return new Session(driverUrl, value.sessionId);
  }

  /** Ends the session, which closes the app's window and ends the app. */
  async delete() {
    await send(this.driverUrl, 'DELETE', `/session/${this.id}`, undefined, COMMAND_TIMEOUT_MS);
  }

  command(method, path, body) {
    return send(this.driverUrl, method, `/session/${this.id}${path}`, body, COMMAND_TIMEOUT_MS);
  }

  /** Returns the first element matching the CSS `selector`, or null. */
  async find(selector) {
    const elements = await this.findAll(selector);
    return elements[0] ?? null;
  }

  /** Returns every element matching the CSS `selector`. */
  async findAll(selector) {
    const value = await this.command('POST', '/elements', { using: 'css selector', value: selector });
    return value.map((reference) => new Element(this, reference[ELEMENT_KEY]));
  }

  /** Waits until an element matching `selector` exists and is displayed. */
  waitForVisible(selector, options) {
    return waitFor(
      `a visible element matching ${selector}`,
      async () => {
        for (const element of await this.findAll(selector)) {
          if (await element.displayed()) return element;
        }
        return null;
      },
      options,
    );
  }

  /** Shorthand for the element whose `data-testid` is `testid`. */
  byTestId(testid, options) {
    return this.waitForVisible(testIdSelector(testid), options);
  }

  /** Returns the serialised DOM of the current page. */
  source() {
    return this.command('GET', '/source');
  }

  /** Returns a PNG screenshot of the webview. */
  async screenshot() {
    const base64 = await this.command('GET', '/screenshot');
    return Buffer.from(base64, 'base64');
  }

  /** Runs `script` (a function body) in the page and returns its result. */
  execute(script, args = []) {
    return this.command('POST', '/execute/sync', { script, args });
  }

  /**
   * Runs `script` (a function body) in the page and returns the value it
   * passes to its last argument, the callback.
   */
  executeAsync(script, args = []) {
    return this.command('POST', '/execute/async', { script, args });
  }
}

/** One element reference within a session. */
export class Element {
  constructor(session, id) {
    this.session = session;
    this.id = id;
  }

  command(method, path, body) {
    return this.session.command(method, `/element/${this.id}${path}`, body);
  }

  /** Serialises the element as a W3C reference, for script arguments. */
  toJSON() {
    return { [ELEMENT_KEY]: this.id };
  }

  click() {
    return this.command('POST', '/click', {});
  }

  clear() {
    return this.command('POST', '/clear', {});
  }

  /** Types `text` into the element, as key events. */
  type(text) {
    return this.command('POST', '/value', { text });
  }

  text() {
    return this.command('GET', '/text');
  }

  /** Returns a DOM property, such as `value` or `disabled`. */
  property(name) {
    return this.command('GET', `/property/${encodeURIComponent(name)}`);
  }

  attribute(name) {
    return this.command('GET', `/attribute/${encodeURIComponent(name)}`);
  }

  async displayed() {
    return (await this.command('GET', '/displayed')) === true;
  }

  async enabled() {
    return (await this.command('GET', '/enabled')) === true;
  }

  /** Returns the first descendant matching the CSS `selector`, or null. */
  async find(selector) {
    const elements = await this.findAll(selector);
    return elements[0] ?? null;
  }

  /** Returns every descendant matching the CSS `selector`. */
  async findAll(selector) {
    const value = await this.command('POST', '/elements', { using: 'css selector', value: selector });
    return value.map((reference) => new Element(this.session, reference[ELEMENT_KEY]));
  }
}

/** Returns a CSS selector for `data-testid="testid"`. */
export function testIdSelector(testid) {
  return `[data-testid="${testid}"]`;
}

async function send(driverUrl, method, path, body, timeoutMs) {
  const command = `${method} ${path}`;
  let response;
  try {
    response = await fetch(`${driverUrl}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    throw new WebDriverError(command, error.name === 'TimeoutError' ? 'timeout' : 'connection failed', error.message);
  }

  const text = await response.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new WebDriverError(command, `HTTP ${response.status}`, `reply is not JSON: ${text.slice(0, 200)}`);
  }
  const value = parsed?.value;
  if (!response.ok || (value && typeof value === 'object' && 'error' in value && value.error)) {
    throw new WebDriverError(command, value?.error ?? `HTTP ${response.status}`, value?.message ?? text.slice(0, 200));
  }
  return value;
}
