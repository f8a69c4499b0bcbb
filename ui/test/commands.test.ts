import { describe, expect, it, vi } from "vitest";

import * as api from "../src/api/commands";
import { CommandError, toAppError } from "../src/api/errors";
import { onRequestLogged, onStatusChanged } from "../src/api/events";
import { emitEvent, logRow, mockCommands, status } from "./helpers";

const filter = { since: "2025-01-01T00:00:00.000Z", until: null, provider: "openai", model: null, status: "4xx" as const, token: null, pathContains: "chat" };

const settingsValue = {
  port: 7500,
  allowedOrigins: ["http://localhost:*"],
  requireToken: false,
  autoLockMinutes: 0,
  lockOnScreenLock: false,
  startAtLogin: true,
  retentionDays: 7,
  maxRows: 1000,
  captureBodies: true,
  bodyCaptureLimitKib: 32,
};

/** Each wrapper, the command it must send and the exact arguments. */
const CASES: Array<[string, () => Promise<unknown>, string, Record<string, unknown>]> = [
  ["appStatus", () => api.appStatus(), "app_status", {}],
  ["passwordStrength", () => api.passwordStrength("hunter2"), "password_strength", { password: "hunter2" }],
  ["vaultCreate", () => api.vaultCreate("pw-create"), "vault_create", { password: "pw-create" }],
  ["vaultUnlock", () => api.vaultUnlock("pw-unlock"), "vault_unlock", { password: "pw-unlock" }],
  ["vaultLock", () => api.vaultLock(), "vault_lock", {}],
  ["vaultChangePassword", () => api.vaultChangePassword("old-pw", "new-pw"), "vault_change_password", { current: "old-pw", next: "new-pw" }],
  ["keysList", () => api.keysList(), "keys_list", {}],
  ["keySet", () => api.keySet("openai", "work", "sk-test"), "key_set", { provider: "openai", label: "work", key: "sk-test" }],
  ["keyRemove", () => api.keyRemove("anthropic", ""), "key_remove", { provider: "anthropic", label: "" }],
  ["keyTest", () => api.keyTest("google", "default"), "key_test", { provider: "google", label: "default" }],
  ["providersList", () => api.providersList(), "providers_list", {}],
  [
    "providerSave",
    () => api.providerSave({ id: "azure", baseUrl: "https://azure.example/openai", auth: "header", authName: "api-key" }),
    "provider_save",
    { provider: { id: "azure", baseUrl: "https://azure.example/openai", auth: "header", authName: "api-key" } },
  ],
  ["providerReset", () => api.providerReset("azure"), "provider_reset", { id: "azure" }],
  ["tokensList", () => api.tokensList(), "tokens_list", {}],
  ["tokenCreate", () => api.tokenCreate("my-app"), "token_create", { name: "my-app", keys: [] }],
  ["tokenPin", () => api.tokenPin("my-app", [{ provider: "openai", label: "work" }]), "token_pin", { name: "my-app", keys: [{ provider: "openai", label: "work" }] }],
  ["tokenRevoke", () => api.tokenRevoke("my-app"), "token_revoke", { name: "my-app" }],
  ["logsQuery", () => api.logsQuery(filter, "cursor-1", 50), "logs_query", { filter, cursor: "cursor-1", limit: 50 }],
  ["logsTotals", () => api.logsTotals(), "logs_totals", {}],
  ["logsExport", () => api.logsExport("jsonl", filter), "logs_export", { format: "jsonl", filter }],
  ["settingsGet", () => api.settingsGet(), "settings_get", {}],
  ["settingsSave", () => api.settingsSave(settingsValue), "settings_save", { settings: settingsValue }],
  ["proxyRestart", () => api.proxyRestart(0), "proxy_restart", { port: 0 }],
  ["activity", () => api.activity(), "activity", {}],
];

describe("command wrappers", () => {
  it.each(CASES)("%s sends its command and arguments", async (_name, run, command, args) => {
    const seen: Array<[string, unknown]> = [];
    mockCommands(
      Object.fromEntries(
        CASES.map(([, , name]) => [
          name,
          (received: Record<string, unknown>) => {
            seen.push([name, received]);
            return null;
          },
        ]),
      ),
    );

    await run();

    expect(seen).toEqual([[command, args]]);
  });

  it("covers every command of the contract", () => {
    const commands = new Set(CASES.map(([, , command]) => command));
    expect(commands.size).toBe(24);
    expect(Object.keys(api).filter((name) => typeof (api as Record<string, unknown>)[name] === "function").length).toBe(CASES.length);
  });

  it("tokenCreate sends the key pins", async () => {
    const calls = mockCommands({ token_create: () => null });
    await api.tokenCreate("my-app", [{ provider: "openai", label: "work" }]);
    expect(calls).toEqual([{ command: "token_create", args: { name: "my-app", keys: [{ provider: "openai", label: "work" }] } }]);
  });

  it("proxyRestart sends null for the configured port", async () => {
    const calls = mockCommands({ proxy_restart: () => status() });
    await api.proxyRestart(null);
    expect(calls).toEqual([{ command: "proxy_restart", args: { port: null } }]);
  });

  it("returns the shell's reply", async () => {
    mockCommands({ app_status: () => status({ vault: "locked" }) });
    await expect(api.appStatus()).resolves.toMatchObject({ vault: "locked" });
  });
});

describe("error normalisation", () => {
  it("keeps the code and message of an AppError", async () => {
    mockCommands({
      vault_unlock: () => {
        throw { code: "wrong_password", message: "The password is wrong." };
      },
    });
    const error = await api.vaultUnlock("nope").catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(CommandError);
    expect(error).toMatchObject({ code: "wrong_password", message: "The password is wrong." });
  });

  it("turns a plain string rejection into internal", async () => {
    mockCommands({
      keys_list: () => {
        throw "command keys_list not found";
      },
    });
    await expect(api.keysList()).rejects.toMatchObject({ code: "internal", message: "command keys_list not found" });
  });

  it("maps an unknown code to internal and keeps the message", () => {
    expect(toAppError({ code: "teapot", message: "short and stout" })).toEqual({ code: "internal", message: "short and stout" });
  });

  it("uses the message of a thrown Error", () => {
    expect(toAppError(new TypeError("boom"))).toEqual({ code: "internal", message: "boom" });
  });

  it("gives a message for empty rejections", () => {
    for (const reason of [undefined, null, "", 42, {}]) {
      const error = toAppError(reason);
      expect(error.code).toBe("internal");
      expect(error.message.length).toBeGreaterThan(0);
    }
  });

  it("round-trips a CommandError", () => {
    expect(toAppError(new CommandError({ code: "port_in_use", message: "taken" }))).toEqual({ code: "port_in_use", message: "taken" });
  });
});

describe("event wrappers", () => {
  it("onStatusChanged passes the payload", async () => {
    mockCommands({});
    const handler = vi.fn();
    await onStatusChanged(handler);
    await emitEvent("status-changed", status({ vault: "locked" }));
    expect(handler).toHaveBeenCalledWith(status({ vault: "locked" }));
  });

  it("onRequestLogged passes each row and stops after unlisten", async () => {
    mockCommands({});
    const handler = vi.fn();
    const unlisten = await onRequestLogged(handler);
    await emitEvent("request-logged", logRow(1));
    unlisten();
    await emitEvent("request-logged", logRow(2));
    expect(handler).toHaveBeenCalledTimes(1);
    expect(handler).toHaveBeenCalledWith(logRow(1));
  });
});
