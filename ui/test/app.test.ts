import { afterEach, describe, expect, it, vi } from "vitest";

import { startActivityReporter } from "../src/activity";
import { startApp, statusText, type App } from "../src/app";
import type { AppStatus } from "../src/generated/AppStatus";
import { allByTestId, byTestId, callsOf, emitEvent, mockCommands, settings, settle, status, submit, type } from "./helpers";

const PORT_IN_USE: AppStatus = status({
  proxy: { state: "failed", address: null, port: 7447, error: { code: "port_in_use", message: "Port 7447 is in use." } },
});

/** Handlers every unlocked screen needs to render without errors. */
const SCREEN_HANDLERS = {
  providers_list: () => [],
  keys_list: () => [],
  tokens_list: () => [],
  settings_get: () => settings(),
  logs_totals: () => ({ today: { requests: 0, inputTokens: 0, outputTokens: 0, costUsd: 0 }, month: { requests: 0, inputTokens: 0, outputTokens: 0, costUsd: 0 } }),
  logs_query: () => ({ rows: [], nextCursor: null }),
  activity: () => null,
};

const started: App[] = [];

afterEach(() => {
  // Each app listens on the document, so drop it before the next test.
  started.splice(0).forEach((app) => app.destroy());
});

async function start(initial: AppStatus, handlers: Parameters<typeof mockCommands>[0] = {}) {
  const calls = mockCommands({ ...SCREEN_HANDLERS, app_status: () => initial, ...handlers });
  const root = document.createElement("div");
  document.body.append(root);
  const app = await startApp(root);
  started.push(app);
  await settle();
  return { calls, app, root };
}

describe("app shell", () => {
  it("shows the create screen when the vault is missing", async () => {
    await start(status({ vault: "missing", proxy: { state: "stopped", address: null, port: null, error: null } }));
    expect(allByTestId("screen-create")).toHaveLength(1);
    expect(allByTestId("app-header")).toHaveLength(0);
  });

  it("shows the unlock screen when locked, and the shell after unlock", async () => {
    await start(status({ vault: "locked", proxy: { state: "stopped", address: null, port: null, error: null } }), { vault_unlock: () => status() });
    expect(allByTestId("screen-unlock")).toHaveLength(1);
    type(byTestId("unlock-password"), "pw");
    submit(byTestId("unlock-form"));
    await settle();
    expect(allByTestId("screen-keys")).toHaveLength(1);
    expect(byTestId("status-text").textContent).toBe("Serving on 127.0.0.1:7447");
  });

  it("navigates between screens and marks the current link", async () => {
    await start(status());
    for (const name of ["connect", "requests", "settings", "keys"]) {
      byTestId(`nav-${name}`).click();
      await settle();
      expect(allByTestId(`screen-${name}`), name).toHaveLength(1);
      expect(byTestId(`nav-${name}`).getAttribute("aria-current")).toBe("page");
      expect(document.querySelectorAll('nav [aria-current="page"]')).toHaveLength(1);
    }
  });

  it("locks with the Lock button", async () => {
    const { calls } = await start(status(), { vault_lock: () => status({ vault: "locked", proxy: { state: "stopped", address: null, port: null, error: null } }) });
    byTestId("lock-button").click();
    await settle();
    expect(callsOf(calls, "vault_lock")).toEqual([{}]);
    expect(allByTestId("screen-unlock")).toHaveLength(1);
  });

  it("follows status-changed events, such as auto-lock", async () => {
    await start(status());
    await emitEvent("status-changed", status({ vault: "locked", proxy: { state: "stopped", address: null, port: null, error: null } }));
    expect(allByTestId("screen-unlock")).toHaveLength(1);
  });
});

describe("port-in-use banner", () => {
  it("appears when the proxy failed with port_in_use", async () => {
    await start(PORT_IN_USE);
    const banner = byTestId("proxy-banner");
    expect(banner.hidden).toBe(false);
    expect(banner.getAttribute("role")).toBe("alert");
    expect(banner.textContent).toContain("Port 7447 is in use");
    expect(allByTestId("port-pick-free")).toHaveLength(1);
  });

  it("picks a free port and hides once serving", async () => {
    const serving = status({ proxy: { state: "serving", address: "127.0.0.1:40123", port: 40123, error: null } });
    const { calls } = await start(PORT_IN_USE, { proxy_restart: () => serving });
    byTestId("port-pick-free").click();
    await settle();
    expect(callsOf(calls, "proxy_restart")).toEqual([{ port: 0 }]);
    expect(byTestId("proxy-banner").hidden).toBe(true);
    expect(byTestId("status-text").textContent).toBe("Serving on 127.0.0.1:40123");
  });

  it("restarts on the port the user enters", async () => {
    const { calls } = await start(PORT_IN_USE, { proxy_restart: () => PORT_IN_USE });
    type(byTestId("port-input"), "8123");
    submit(byTestId("port-form"));
    await settle();
    expect(callsOf(calls, "proxy_restart")).toEqual([{ port: 8123 }]);
  });

  it("rejects an invalid port without a call", async () => {
    const { calls } = await start(PORT_IN_USE);
    type(byTestId("port-input"), "70000");
    submit(byTestId("port-form"));
    await settle();
    expect(callsOf(calls, "proxy_restart")).toEqual([]);
    expect(byTestId("port-message").textContent).toContain("1 to 65535");
  });

  it("offers a retry for other failures", async () => {
    const failed = status({ proxy: { state: "failed", address: null, port: null, error: { code: "config", message: "config.toml is invalid." } } });
    const { calls } = await start(failed, { proxy_restart: () => failed });
    expect(byTestId("proxy-banner").textContent).toContain("config.toml is invalid.");
    expect(allByTestId("port-form")).toHaveLength(0);
    byTestId("proxy-retry").click();
    await settle();
    expect(callsOf(calls, "proxy_restart")).toEqual([{ port: null }]);
  });

  it("appears after a status-changed event", async () => {
    await start(status());
    expect(byTestId("proxy-banner").hidden).toBe(true);
    await emitEvent("status-changed", PORT_IN_USE);
    expect(byTestId("proxy-banner").hidden).toBe(false);
  });
});

describe("statusText", () => {
  it("describes each state", () => {
    expect(statusText(status({ vault: "locked" }))).toBe("Locked");
    expect(statusText(status({ vault: "missing" }))).toBe("No vault yet");
    expect(statusText(PORT_IN_USE)).toBe("Unlocked, proxy failed to start");
    expect(statusText(status({ proxy: { state: "serving", address: null, port: 7000, error: null } }))).toBe("Serving on 127.0.0.1:7000");
  });
});

describe("activity reporter", () => {
  it("sends at most one activity call per interval", () => {
    let now = 1_000_000;
    const send = vi.fn().mockResolvedValue(undefined);
    const target = new EventTarget();
    const reporter = startActivityReporter(target, send, 30_000, () => now);

    target.dispatchEvent(new Event("keydown"));
    target.dispatchEvent(new Event("pointerdown"));
    now += 29_999;
    target.dispatchEvent(new Event("keydown"));
    expect(send).toHaveBeenCalledTimes(1);

    now += 1;
    target.dispatchEvent(new Event("wheel"));
    expect(send).toHaveBeenCalledTimes(2);

    reporter.stop();
    now += 60_000;
    target.dispatchEvent(new Event("keydown"));
    expect(send).toHaveBeenCalledTimes(2);
  });

  it("calls the activity command on input once unlocked", async () => {
    const { calls } = await start(status());
    document.dispatchEvent(new KeyboardEvent("keydown", { key: "a" }));
    document.dispatchEvent(new KeyboardEvent("keydown", { key: "b" }));
    await settle();
    expect(callsOf(calls, "activity")).toEqual([{}]);
  });
});
