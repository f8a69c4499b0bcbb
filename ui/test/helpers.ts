// Shared test setup: a recording Tauri IPC mock, fixtures shaped like the
// shell's replies, and DOM helpers.

import { emit } from "@tauri-apps/api/event";
import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import { afterEach, expect } from "vitest";

import type { AppError } from "../src/generated/AppError";
import type { AppStatus } from "../src/generated/AppStatus";
import type { LogRow } from "../src/generated/LogRow";
import type { ProviderInfo } from "../src/generated/ProviderInfo";
import type { Settings } from "../src/generated/Settings";

export type Args = Record<string, unknown>;
export type Handler = (args: Args) => unknown;

export interface Call {
  command: string;
  args: Args;
}

/** Rejects like the shell does, with an `AppError` object. */
export function fail(error: AppError): never {
  throw error;
}

/**
 * Installs a Tauri IPC mock that replies with `handlers` and records every
 * command call. A command without a handler rejects with `internal`, so a
 * screen that sends an unexpected command shows an error instead of passing.
 */
export function mockCommands(handlers: Record<string, Handler>): Call[] {
  const calls: Call[] = [];
  mockIPC(
    (command, payload) => {
      const args = (payload ?? {}) as Args;
      calls.push({ command, args });
      const handler = handlers[command];
      if (handler === undefined) {
        throw { code: "internal", message: `no mock for ${command}` } satisfies AppError;
      }
      return handler(args);
    },
    { shouldMockEvents: true },
  );
  return calls;
}

/** Returns the calls of one command. */
export function callsOf(calls: Call[], command: string): Args[] {
  return calls.filter((call) => call.command === command).map((call) => call.args);
}

/** Sends an event as the shell would. */
export async function emitEvent(event: string, payload: unknown): Promise<void> {
  await emit(event, payload);
  await settle();
}

/** Lets pending promises and zero-delay timers run. */
export async function settle(rounds = 5): Promise<void> {
  for (let round = 0; round < rounds; round += 1) {
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

/** Returns the only element with `data-testid`, failing the test when there is none or several. */
export function byTestId<T extends HTMLElement = HTMLElement>(testid: string, root: ParentNode = document): T {
  const found = root.querySelectorAll<T>(`[data-testid="${testid}"]`);
  expect(found.length, `elements with data-testid="${testid}"`).toBe(1);
  return found[0] as T;
}

export function allByTestId<T extends HTMLElement = HTMLElement>(testid: string, root: ParentNode = document): T[] {
  return [...root.querySelectorAll<T>(`[data-testid="${testid}"]`)];
}

/** Sets an input's value and fires `input` and `change`, as typing does. */
export function type(input: HTMLInputElement | HTMLSelectElement, value: string): void {
  input.value = value;
  input.dispatchEvent(new Event("input", { bubbles: true }));
  input.dispatchEvent(new Event("change", { bubbles: true }));
}

/** Submits a form the way Enter or its submit button does. */
export function submit(form: HTMLFormElement): void {
  form.dispatchEvent(new SubmitEvent("submit", { bubbles: true, cancelable: true }));
}

/** Mounts `element` in the document so focus and document listeners work. */
export function mount(element: HTMLElement): HTMLElement {
  document.body.append(element);
  return element;
}

afterEach(() => {
  clearMocks();
  document.body.replaceChildren();
});

export function status(overrides: Partial<AppStatus> = {}): AppStatus {
  return {
    vault: "unlocked",
    proxy: { state: "serving", address: "127.0.0.1:7447", port: 7447, error: null },
    dataDir: "/home/user/.local/share/keyport",
    version: "0.1.0",
    ...overrides,
  };
}

export function settings(overrides: Partial<Settings> = {}): Settings {
  return {
    port: 7447,
    allowedOrigins: ["http://localhost:*", "http://127.0.0.1:*"],
    requireToken: true,
    autoLockMinutes: 15,
    lockOnScreenLock: true,
    startAtLogin: false,
    retentionDays: 30,
    maxRows: 100000,
    captureBodies: false,
    bodyCaptureLimitKib: 64,
    ...overrides,
  };
}

export function provider(id: string, overrides: Partial<ProviderInfo> = {}): ProviderInfo {
  return { id, baseUrl: `https://api.${id}.test/v1`, auth: "bearer", authName: null, builtIn: true, overridden: false, needsKey: true, ...overrides };
}

export function logRow(id: number, overrides: Partial<LogRow> = {}): LogRow {
  const started = Date.UTC(2025, 0, 15, 12, 0, id);
  return {
    id,
    startedAt: new Date(started).toISOString(),
    token: "my-app",
    keyLabel: null,
    origin: null,
    provider: "openai",
    method: "POST",
    path: "/v1/chat/completions",
    model: "gpt-4o-mini",
    streamed: false,
    status: 200,
    errorKind: null,
    outcome: "ok",
    latencyMs: 420,
    ttfbMs: 180,
    requestBytes: 512,
    responseBytes: 2048,
    inputTokens: 12,
    outputTokens: 34,
    cachedTokens: null,
    costUsd: 0.000123,
    upstreamRequestId: `req_${id}`,
    cursor: `${started}.${id}`,
    ...overrides,
  };
}
