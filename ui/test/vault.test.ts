import { afterEach, describe, expect, it, vi } from "vitest";

import { STRENGTH_DEBOUNCE_MS } from "../src/components/strength-meter";
import type { AppStatus } from "../src/generated/AppStatus";
import type { PasswordStrength } from "../src/generated/PasswordStrength";
import type { AppContext } from "../src/screen";
import { createVaultScreen, unlockScreen } from "../src/screens/vault";
import { byTestId, callsOf, mockCommands, mount, settle, status, submit, type } from "./helpers";

/** Scores by length, so tests pick acceptable and weak passwords by size. */
function strengthOf(password: string): PasswordStrength {
  const score = Math.min(4, Math.floor(password.length / 4));
  return {
    score,
    acceptable: score >= 3,
    warning: score < 3 ? "This password is easy to guess." : null,
    suggestions: score < 3 ? ["Add another word or two."] : [],
  };
}

function fakeContext(initial: AppStatus): AppContext & { published: AppStatus[] } {
  const published: AppStatus[] = [];
  return {
    published,
    status: () => published.at(-1) ?? initial,
    setStatus: (next) => published.push(next),
  };
}

/** Types `value` and waits past the debounce for the score. */
async function typePassword(input: HTMLInputElement, value: string): Promise<void> {
  type(input, value);
  await vi.advanceTimersByTimeAsync(STRENGTH_DEBOUNCE_MS + 10);
}

afterEach(() => {
  vi.useRealTimers();
});

describe("create vault screen", () => {
  it("scores the password once after typing stops", async () => {
    vi.useFakeTimers();
    const calls = mockCommands({ password_strength: (args) => strengthOf(String(args["password"])) });
    const screen = createVaultScreen(fakeContext(status({ vault: "missing" })));
    mount(screen.element);
    const password = byTestId<HTMLInputElement>("create-password");

    type(password, "c");
    await vi.advanceTimersByTimeAsync(STRENGTH_DEBOUNCE_MS / 2);
    type(password, "co");
    await vi.advanceTimersByTimeAsync(STRENGTH_DEBOUNCE_MS / 2);
    type(password, "correct horse battery");
    expect(callsOf(calls, "password_strength")).toEqual([]);
    await vi.advanceTimersByTimeAsync(STRENGTH_DEBOUNCE_MS + 10);

    expect(callsOf(calls, "password_strength")).toEqual([{ password: "correct horse battery" }]);
    expect(byTestId("strength-meter").dataset["score"]).toBe("4");
    expect(byTestId("strength-text").textContent).toContain("Strong");
    expect(byTestId("strength-text").textContent).toContain("acceptable");
  });

  it("shows the warning and suggestions of a weak password", async () => {
    vi.useFakeTimers();
    mockCommands({ password_strength: (args) => strengthOf(String(args["password"])) });
    mount(createVaultScreen(fakeContext(status({ vault: "missing" }))).element);

    await typePassword(byTestId("create-password"), "abc");

    const meter = byTestId("strength-meter");
    expect(meter.dataset["score"]).toBe("0");
    expect(meter.textContent).toContain("too weak");
    expect(meter.textContent).toContain("This password is easy to guess.");
    expect(meter.textContent).toContain("Add another word or two.");
  });

  it("says that a lost password cannot be recovered", () => {
    mockCommands({});
    mount(createVaultScreen(fakeContext(status({ vault: "missing" }))).element);
    expect(byTestId("create-warning").textContent).toMatch(/no way to recover a lost password/i);
  });

  it("enables submit only when acceptable and matching", async () => {
    vi.useFakeTimers();
    mockCommands({ password_strength: (args) => strengthOf(String(args["password"])) });
    mount(createVaultScreen(fakeContext(status({ vault: "missing" }))).element);
    const password = byTestId<HTMLInputElement>("create-password");
    const confirm = byTestId<HTMLInputElement>("create-confirm");
    const button = byTestId<HTMLButtonElement>("create-submit");

    await typePassword(password, "short");
    type(confirm, "short");
    expect(button.disabled).toBe(true);

    await typePassword(password, "a much longer passphrase");
    expect(button.disabled).toBe(true);
    expect(byTestId("create-mismatch").hidden).toBe(false);

    type(confirm, "a much longer passphrase");
    expect(byTestId("create-mismatch").hidden).toBe(true);
    expect(button.disabled).toBe(false);

    // Typing again invalidates the score until the new one arrives.
    type(password, "a much longer passphrase!");
    expect(button.disabled).toBe(true);
  });

  it("creates the vault, clears both fields and publishes the status", async () => {
    vi.useFakeTimers();
    const unlocked = status();
    const calls = mockCommands({
      password_strength: (args) => strengthOf(String(args["password"])),
      vault_create: () => unlocked,
    });
    const context = fakeContext(status({ vault: "missing" }));
    mount(createVaultScreen(context).element);
    const password = byTestId<HTMLInputElement>("create-password");
    const confirm = byTestId<HTMLInputElement>("create-confirm");

    await typePassword(password, "correct horse battery staple");
    type(confirm, "correct horse battery staple");
    submit(byTestId("create-form"));

    expect(password.value).toBe("");
    expect(confirm.value).toBe("");
    await vi.advanceTimersByTimeAsync(0);
    expect(callsOf(calls, "vault_create")).toEqual([{ password: "correct horse battery staple" }]);
    expect(context.published).toEqual([unlocked]);
  });

  it("does not send vault_create while submit is disabled", async () => {
    vi.useFakeTimers();
    const calls = mockCommands({ password_strength: (args) => strengthOf(String(args["password"])) });
    mount(createVaultScreen(fakeContext(status({ vault: "missing" }))).element);

    await typePassword(byTestId("create-password"), "weak");
    type(byTestId("create-confirm"), "weak");
    submit(byTestId("create-form"));
    await vi.advanceTimersByTimeAsync(0);

    expect(callsOf(calls, "vault_create")).toEqual([]);
  });
});

describe("unlock screen", () => {
  it("shows an inline error for wrong_password and clears the field", async () => {
    const calls = mockCommands({
      vault_unlock: () => {
        throw { code: "wrong_password", message: "wrong" };
      },
    });
    const context = fakeContext(status({ vault: "locked" }));
    mount(unlockScreen(context).element);
    const password = byTestId<HTMLInputElement>("unlock-password");

    type(password, "not it");
    submit(byTestId("unlock-form"));
    await settle();

    expect(callsOf(calls, "vault_unlock")).toEqual([{ password: "not it" }]);
    const error = byTestId("unlock-error");
    expect(error.hidden).toBe(false);
    expect(error.getAttribute("role")).toBe("alert");
    expect(error.textContent).toBe("Wrong password. Try again.");
    expect(password.value).toBe("");
    expect(password.getAttribute("aria-invalid")).toBe("true");
    expect(context.published).toEqual([]);
  });

  it("shows the shell's message for other errors", async () => {
    mockCommands({
      vault_unlock: () => {
        throw { code: "vault_busy", message: "Another Keyport process is changing the vault. Try again in a moment." };
      },
    });
    mount(unlockScreen(fakeContext(status({ vault: "locked" }))).element);
    type(byTestId("unlock-password"), "pw");
    submit(byTestId("unlock-form"));
    await settle();
    expect(byTestId("unlock-error").textContent).toContain("Another Keyport process");
  });

  it("publishes the unlocked status", async () => {
    const unlocked = status();
    mockCommands({ vault_unlock: () => unlocked });
    const context = fakeContext(status({ vault: "locked" }));
    mount(unlockScreen(context).element);
    type(byTestId("unlock-password"), "right");
    submit(byTestId("unlock-form"));
    await settle();
    expect(context.published).toEqual([unlocked]);
    expect(byTestId("unlock-error").hidden).toBe(true);
  });
});
