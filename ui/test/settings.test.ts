import { afterEach, describe, expect, it, vi } from "vitest";

import { STRENGTH_DEBOUNCE_MS } from "../src/components/strength-meter";
import type { Settings } from "../src/generated/Settings";
import { settingsScreen } from "../src/screens/settings";
import { allByTestId, byTestId, callsOf, mockCommands, mount, settings, settle, submit, type } from "./helpers";

function check(testid: string, checked: boolean): void {
  const input = byTestId<HTMLInputElement>(testid);
  input.checked = checked;
  input.dispatchEvent(new Event("change", { bubbles: true }));
}

async function mountSettings(stored: Settings = settings(), handlers: Parameters<typeof mockCommands>[0] = {}) {
  const calls = mockCommands({ settings_get: () => stored, settings_save: (args) => args["settings"], ...handlers });
  mount(settingsScreen().element);
  await settle();
  return calls;
}

afterEach(() => {
  vi.useRealTimers();
});

describe("settings form", () => {
  it("fills the form from settings_get", async () => {
    await mountSettings(settings({ port: 7500, autoLockMinutes: 0, captureBodies: false }));
    expect(byTestId<HTMLInputElement>("settings-port").value).toBe("7500");
    expect(byTestId<HTMLInputElement>("settings-auto-lock").value).toBe("0");
    expect(allByTestId("settings-origin").map((item) => item.dataset["origin"])).toEqual(["http://localhost:*", "http://127.0.0.1:*"]);
    expect(byTestId<HTMLInputElement>("settings-require-token").checked).toBe(true);
    expect(byTestId("settings-token-warning").hidden).toBe(true);
    expect(byTestId<HTMLInputElement>("settings-body-limit").disabled).toBe(true);
  });

  it("round-trips every field through settings_save", async () => {
    const stored = settings({ port: 7999 });
    const calls = await mountSettings(settings(), { settings_save: () => stored });

    type(byTestId("settings-port"), "8100");
    allByTestId("settings-origin-remove")[1]?.click();
    type(byTestId("settings-origin-input"), "https://app.example.com");
    byTestId("settings-origin-add").click();
    check("settings-require-token", false);
    type(byTestId("settings-auto-lock"), "5");
    check("settings-lock-on-screen-lock", false);
    check("settings-start-at-login", true);
    type(byTestId("settings-retention-days"), "7");
    type(byTestId("settings-max-rows"), "5000");
    check("settings-capture-bodies", true);
    type(byTestId("settings-body-limit"), "128");
    submit(byTestId("settings-form"));
    await settle();

    expect(callsOf(calls, "settings_save")).toEqual([
      {
        settings: {
          port: 8100,
          allowedOrigins: ["http://localhost:*", "https://app.example.com"],
          requireToken: false,
          autoLockMinutes: 5,
          lockOnScreenLock: false,
          startAtLogin: true,
          retentionDays: 7,
          maxRows: 5000,
          captureBodies: true,
          bodyCaptureLimitKib: 128,
        },
      },
    ]);
    // The form shows what the shell stored, not what was typed.
    expect(byTestId<HTMLInputElement>("settings-port").value).toBe("7999");
    expect(byTestId("settings-message").textContent).toBe("Settings saved.");
  });

  it("warns when the token requirement is off", async () => {
    await mountSettings();
    check("settings-require-token", false);
    const warning = byTestId("settings-token-warning");
    expect(warning.hidden).toBe(false);
    expect(warning.textContent).toContain("every program on this computer");
  });

  it("adds an origin with Enter without submitting", async () => {
    const calls = await mountSettings();
    const input = byTestId<HTMLInputElement>("settings-origin-input");
    type(input, "http://localhost:3000");
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true, cancelable: true }));
    expect(allByTestId("settings-origin").map((item) => item.dataset["origin"])).toContain("http://localhost:3000");
    expect(callsOf(calls, "settings_save")).toEqual([]);
  });

  it("shows the shell's error and keeps the input", async () => {
    await mountSettings(settings(), {
      settings_save: () => {
        throw { code: "invalid_input", message: "Port 80 needs root. Choose 1024 or higher." };
      },
    });
    type(byTestId("settings-port"), "80");
    submit(byTestId("settings-form"));
    await settle();
    expect(byTestId("settings-message").textContent).toBe("Port 80 needs root. Choose 1024 or higher.");
    expect(byTestId<HTMLInputElement>("settings-port").value).toBe("80");
  });

  it("rejects an empty number field before saving", async () => {
    const calls = await mountSettings();
    type(byTestId("settings-retention-days"), "");
    submit(byTestId("settings-form"));
    await settle();
    expect(callsOf(calls, "settings_save")).toEqual([]);
    expect(byTestId("settings-message").textContent).toContain("Keep requests for days");
  });
});

describe("password change", () => {
  const strength = (args: Record<string, unknown>) => {
    const acceptable = String(args["password"]).length >= 12;
    return { score: acceptable ? 4 : 1, acceptable, warning: null, suggestions: [] };
  };

  async function fillPasswords(current: string, next: string, confirm: string): Promise<void> {
    type(byTestId("password-current"), current);
    type(byTestId("password-new"), next);
    await vi.advanceTimersByTimeAsync(STRENGTH_DEBOUNCE_MS + 10);
    type(byTestId("password-confirm"), confirm);
  }

  it("sends current and new password and clears the fields", async () => {
    vi.useFakeTimers();
    const calls = mockCommands({ settings_get: () => settings(), password_strength: strength, vault_change_password: () => null });
    mount(settingsScreen().element);
    await fillPasswords("old password", "a brand new passphrase", "a brand new passphrase");
    expect(byTestId<HTMLButtonElement>("password-submit").disabled).toBe(false);

    submit(byTestId("password-form"));
    await vi.advanceTimersByTimeAsync(0);

    expect(callsOf(calls, "vault_change_password")).toEqual([{ current: "old password", next: "a brand new passphrase" }]);
    for (const id of ["password-current", "password-new", "password-confirm"]) {
      expect(byTestId<HTMLInputElement>(id).value, id).toBe("");
    }
    expect(byTestId("password-message").textContent).toContain("Password changed");
  });

  it("stays disabled for a weak or mismatched password", async () => {
    vi.useFakeTimers();
    mockCommands({ settings_get: () => settings(), password_strength: strength });
    mount(settingsScreen().element);
    await fillPasswords("old", "short", "short");
    expect(byTestId<HTMLButtonElement>("password-submit").disabled).toBe(true);
    await fillPasswords("old", "a brand new passphrase", "a brand new passphrase?");
    expect(byTestId<HTMLButtonElement>("password-submit").disabled).toBe(true);
  });

  it("reports a wrong current password", async () => {
    vi.useFakeTimers();
    mockCommands({
      settings_get: () => settings(),
      password_strength: strength,
      vault_change_password: () => {
        throw { code: "wrong_password", message: "wrong" };
      },
    });
    mount(settingsScreen().element);
    await fillPasswords("bad", "a brand new passphrase", "a brand new passphrase");
    submit(byTestId("password-form"));
    await vi.advanceTimersByTimeAsync(0);
    expect(byTestId("password-message").textContent).toBe("The current password is wrong. Nothing was changed.");
    expect(byTestId("password-message").getAttribute("role")).toBe("alert");
  });
});
