import { describe, expect, it } from "vitest";

import type { KeySummary } from "../src/generated/KeySummary";
import { describeTest, keysScreen } from "../src/screens/keys";
import { validateProvider } from "../src/screens/provider-form";
import { allByTestId, byTestId, callsOf, mockCommands, mount, provider, settle, submit, type } from "./helpers";

const SECRET = "sk-canary-0123456789abcdef";

function key(providerId: string, label: string): KeySummary {
  return { provider: providerId, label, masked: "sk-…cdef", createdAt: "2025-01-10T09:00:00Z", updatedAt: "2025-01-10T09:00:00Z" };
}

const PROVIDERS = [provider("openai"), provider("anthropic", { auth: "anthropic" }), provider("ollama", { needsKey: false, auth: "none" })];

async function mountKeys(handlers: Parameters<typeof mockCommands>[0] = {}) {
  const calls = mockCommands({ providers_list: () => PROVIDERS, keys_list: () => [key("openai", "default")], ...handlers });
  mount(keysScreen().element);
  await settle();
  return calls;
}

function row(providerId: string, label: string): HTMLElement {
  const found = allByTestId("key-row").filter((element) => element.dataset["provider"] === providerId && element.dataset["label"] === label);
  expect(found).toHaveLength(1);
  return found[0] as HTMLElement;
}

describe("keys screen", () => {
  it("lists providers with their keys", async () => {
    await mountKeys();
    expect(allByTestId("provider-card").map((card) => card.dataset["provider"])).toEqual(["openai", "anthropic", "ollama"]);
    const openai = row("openai", "default");
    expect(openai.textContent).toContain("sk-…cdef");
    expect(openai.querySelector("time")?.getAttribute("datetime")).toBe("2025-01-10T09:00:00Z");
  });

  it("offers only providers that need a key in the add form", async () => {
    await mountKeys();
    const options = [...byTestId<HTMLSelectElement>("key-provider").options].map((option) => option.value);
    expect(options).toEqual(["openai", "anthropic"]);
  });

  it("clears the key input before the call and never shows the key", async () => {
    let release: (value: string) => void = () => undefined;
    let valueDuringCall: string | null = null;
    const calls = await mountKeys({
      key_set: () => {
        valueDuringCall = byTestId<HTMLInputElement>("key-value").value;
        return new Promise<string>((resolve) => (release = resolve));
      },
    });
    const input = byTestId<HTMLInputElement>("key-value");
    expect(input.type).toBe("password");

    type(byTestId("key-provider"), "anthropic");
    type(byTestId("key-label"), "work");
    type(input, `  ${SECRET}\n`);
    submit(byTestId("key-form"));

    expect(input.value).toBe("");
    await settle();
    expect(valueDuringCall).toBe("");
    expect(callsOf(calls, "key_set")).toEqual([{ provider: "anthropic", label: "work", key: SECRET }]);

    release("added");
    await settle();
    expect(byTestId("key-message").textContent).toBe('Added the anthropic key "work".');
    expect(document.body.innerHTML).not.toContain(SECRET);
    expect(callsOf(calls, "keys_list")).toHaveLength(2);
  });

  it("clears the key input when key_set fails", async () => {
    await mountKeys({
      key_set: () => {
        throw { code: "invalid_input", message: "The key contains whitespace." };
      },
    });
    const input = byTestId<HTMLInputElement>("key-value");
    type(input, SECRET);
    submit(byTestId("key-form"));
    await settle();
    expect(input.value).toBe("");
    expect(byTestId("key-message").textContent).toBe("The key contains whitespace.");
    expect(document.body.innerHTML).not.toContain(SECRET);
  });

  it("reports a replaced key", async () => {
    await mountKeys({ key_set: () => "replaced" });
    row("openai", "default").querySelector<HTMLButtonElement>('[data-testid="key-replace"]')?.click();
    expect(byTestId<HTMLSelectElement>("key-provider").value).toBe("openai");
    expect(document.activeElement).toBe(byTestId("key-value"));
    type(byTestId("key-value"), SECRET);
    submit(byTestId("key-form"));
    await settle();
    expect(byTestId("key-message").textContent).toBe('Replaced the openai key "default".');
  });

  it("shows the key test result", async () => {
    const calls = await mountKeys({ key_test: () => ({ ok: false, status: 401, latencyMs: 311.6, message: "Incorrect API key provided." }) });
    row("openai", "default").querySelector<HTMLButtonElement>('[data-testid="key-test"]')?.click();
    await settle();
    expect(callsOf(calls, "key_test")).toEqual([{ provider: "openai", label: "default" }]);
    const result = byTestId("key-test-result");
    expect(result.textContent).toBe("Failed: HTTP 401 in 312 ms. Incorrect API key provided.");
    expect(result.classList.contains("error")).toBe(true);
  });

  it("removes a key only after confirmation", async () => {
    const calls = await mountKeys({ key_remove: () => null });
    const remove = (): void => row("openai", "default").querySelector<HTMLButtonElement>('[data-testid="key-remove"]')?.click();

    remove();
    expect(byTestId("confirm-dialog").getAttribute("role")).toBe("alertdialog");
    document.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
    await settle();
    expect(allByTestId("confirm-dialog")).toHaveLength(0);
    expect(callsOf(calls, "key_remove")).toEqual([]);

    remove();
    byTestId("confirm-accept").click();
    await settle();
    expect(callsOf(calls, "key_remove")).toEqual([{ provider: "openai", label: "default" }]);
  });

  it("saves a custom provider with a header name", async () => {
    const saved = [...PROVIDERS, provider("azure", { builtIn: false, auth: "header", authName: "api-key" })];
    const calls = await mountKeys({ provider_save: () => saved });
    type(byTestId("provider-id"), "azure");
    type(byTestId("provider-base-url"), "https://example.openai.azure.com/openai");
    type(byTestId("provider-auth"), "header");
    expect(byTestId<HTMLInputElement>("provider-auth-name").disabled).toBe(false);
    type(byTestId("provider-auth-name"), "api-key");
    submit(byTestId("provider-form"));
    await settle();

    expect(callsOf(calls, "provider_save")).toEqual([
      { provider: { id: "azure", baseUrl: "https://example.openai.azure.com/openai", auth: "header", authName: "api-key" } },
    ]);
    expect(allByTestId("provider-card").map((card) => card.dataset["provider"])).toContain("azure");
  });

  it("resets an overridden provider after confirmation", async () => {
    const overridden = [provider("openai", { overridden: true, baseUrl: "https://gateway.example/v1" })];
    const calls = await mountKeys({ providers_list: () => overridden, provider_reset: () => [provider("openai")] });
    byTestId("provider-reset").click();
    byTestId("confirm-accept").click();
    await settle();
    expect(callsOf(calls, "provider_reset")).toEqual([{ id: "openai" }]);
    expect(allByTestId("provider-reset")).toHaveLength(0);
  });
});

describe("provider validation", () => {
  it("rejects what the core would reject", () => {
    expect(validateProvider({ id: "Azure", baseUrl: "https://a.example", auth: "bearer", authName: null })).toMatch(/invalid/);
    expect(validateProvider({ id: "azure", baseUrl: "a.example", auth: "bearer", authName: null })).toMatch(/not a valid URL/);
    expect(validateProvider({ id: "azure", baseUrl: "ftp://a.example", auth: "bearer", authName: null })).toMatch(/https:\/\/ or http:\/\//);
    expect(validateProvider({ id: "azure", baseUrl: "https://a.example", auth: "query", authName: "" })).toMatch(/query parameter name/);
    expect(validateProvider({ id: "azure_2", baseUrl: "https://a.example", auth: "header", authName: "api-key" })).toBeNull();
  });
});

describe("describeTest", () => {
  it("describes a passing test without a message", () => {
    expect(describeTest({ ok: true, status: 200, latencyMs: 95, message: "" })).toBe("OK: HTTP 200 in 95 ms.");
  });

  it("describes a network failure", () => {
    expect(describeTest({ ok: false, status: null, latencyMs: 5000, message: "timed out" })).toBe("Failed: no HTTP status in 5000 ms. timed out");
  });
});
