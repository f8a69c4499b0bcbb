import { afterEach, describe, expect, it, vi } from "vitest";

import type { AppStatus } from "../src/generated/AppStatus";
import type { CreatedToken } from "../src/generated/CreatedToken";
import type { KeySummary } from "../src/generated/KeySummary";
import type { TokenInfo } from "../src/generated/TokenInfo";
import type { AppContext } from "../src/screen";
import { connectScreen, pinChoices } from "../src/screens/connect";
import { TOKEN_PLACEHOLDER, allSnippets, kaibanSnippet, proxyBaseUrl } from "../src/snippets";
import { allByTestId, byTestId, callsOf, mockCommands, mount, settings, settle, status, submit, type } from "./helpers";

const CREATED: CreatedToken = { name: "my-app", prefix: "kp_ab12", createdAt: "2025-01-10T09:00:00Z", token: "kp_ab12cd34ef56gh78ij90" };

function context(initial: AppStatus): AppContext {
  return { status: () => initial, setStatus: () => undefined };
}

const KEYS: KeySummary[] = [
  { provider: "openai", label: "default", masked: "sk-…aaaa", createdAt: "2025-01-01T00:00:00Z", updatedAt: "2025-01-01T00:00:00Z" },
  { provider: "openai", label: "client-a", masked: "sk-…bbbb", createdAt: "2025-01-01T00:00:00Z", updatedAt: "2025-01-01T00:00:00Z" },
  { provider: "anthropic", label: "default", masked: "sk-…cccc", createdAt: "2025-01-01T00:00:00Z", updatedAt: "2025-01-01T00:00:00Z" },
];

async function mountConnect(current: AppStatus = status({ proxy: { state: "serving", address: "127.0.0.1:51234", port: 51234, error: null } }), keys: KeySummary[] = KEYS) {
  let tokens: TokenInfo[] = [{ name: "old", prefix: "kp_zz99", createdAt: "2024-12-01T10:00:00Z", keys: [{ provider: "openai", label: "client-a" }, { provider: "mistral", label: "home" }] }];
  const calls = mockCommands({
    tokens_list: () => tokens,
    token_create: () => {
      tokens = [...tokens, { name: CREATED.name, prefix: CREATED.prefix, createdAt: CREATED.createdAt, keys: [] }];
      return CREATED;
    },
    token_revoke: () => null,
    token_pin: (args) => {
      const { name, keys: pins } = args as { name: string; keys: TokenInfo["keys"] };
      tokens = tokens.map((token) => (token.name === name ? { ...token, keys: pins } : token));
      return null;
    },
    settings_get: () => settings({ port: 7600 }),
    keys_list: () => keys,
  });
  const screen = connectScreen(context(current));
  mount(screen.element);
  await settle();
  return { calls, screen };
}

async function createToken(): Promise<void> {
  type(byTestId("token-name"), "my-app");
  submit(byTestId("token-form"));
  await settle();
}

function snippetText(id: string): string {
  type(byTestId("snippet-select"), id);
  return byTestId("snippet-code").textContent ?? "";
}

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("connect screen tokens", () => {
  it("shows a created token once with a warning", async () => {
    const { calls } = await mountConnect();
    await createToken();

    expect(callsOf(calls, "token_create")).toEqual([{ name: "my-app", keys: [] }]);
    expect(byTestId<HTMLInputElement>("token-value").value).toBe(CREATED.token);
    expect(byTestId("token-reveal").textContent).toContain("you won't see it again");
    expect(byTestId<HTMLInputElement>("token-name").value).toBe("");
    // The list shows only the prefix.
    const listed = allByTestId("token-row").find((row) => row.dataset["name"] === "my-app");
    expect(listed?.textContent).toContain("kp_ab12");
    expect(listed?.textContent).not.toContain(CREATED.token);

    byTestId("token-done").click();
    expect(byTestId("token-reveal").hidden).toBe(true);
    // An input's value is not in innerHTML, so check that the input is gone.
    expect(allByTestId("token-value")).toHaveLength(0);
    expect(document.body.innerHTML).not.toContain(CREATED.token);
    expect(byTestId("snippet-code").textContent).not.toContain(CREATED.token);
  });

  it("pins a new token to a chosen labelled key", async () => {
    const { calls } = await mountConnect();
    expect(byTestId("token-pins").hidden).toBe(false);
    const selects = allByTestId<HTMLSelectElement>("token-pin");
    // Only openai has a key besides its default.
    expect(selects.map((select) => select.dataset["provider"])).toEqual(["openai"]);
    expect(Array.from(selects[0]!.options).map((option) => option.value)).toEqual(["", "client-a"]);
    type(selects[0]!, "client-a");
    await createToken();
    expect(callsOf(calls, "token_create")).toEqual([{ name: "my-app", keys: [{ provider: "openai", label: "client-a" }] }]);
    // The choice resets for the next token.
    expect(allByTestId<HTMLSelectElement>("token-pin")[0]!.value).toBe("");
  });

  it("changes the keys of an existing token", async () => {
    const { calls } = await mountConnect();
    const row = (): HTMLElement => allByTestId("token-row").find((candidate) => candidate.dataset["name"] === "old")!;
    byTestId("token-pins-edit", row()).click();
    const select = byTestId<HTMLSelectElement>("token-row-pin", row());
    expect(select.value).toBe("client-a");
    type(select, "");
    byTestId("token-pins-save", row()).click();
    await settle();
    // The mistral pin has no choice here, so it is kept.
    expect(callsOf(calls, "token_pin")).toEqual([{ name: "old", keys: [{ provider: "mistral", label: "home" }] }]);
    expect(byTestId("token-keys", row()).textContent).toBe("mistral: home");
    expect(byTestId("token-list-message").textContent).toContain('Saved the keys of the token "old"');
  });

  it("cancels a change of keys without saving", async () => {
    const { calls } = await mountConnect();
    const row = (): HTMLElement => allByTestId("token-row").find((candidate) => candidate.dataset["name"] === "old")!;
    byTestId("token-pins-edit", row()).click();
    byTestId("token-pins-cancel", row()).click();
    await settle();
    expect(callsOf(calls, "token_pin")).toEqual([]);
    expect(byTestId("token-keys", row()).textContent).toBe("openai: client-a, mistral: home");
  });

  it("hides the key choice without labelled keys", async () => {
    await mountConnect(undefined, KEYS.filter((key) => key.label === "default"));
    expect(byTestId("token-pins").hidden).toBe(true);
    expect(allByTestId("token-pin")).toHaveLength(0);
    expect(allByTestId("token-pins-edit")).toHaveLength(0);
  });

  it("groups labelled keys by provider", () => {
    const summary = (provider: string, label: string): KeySummary => ({ provider, label, masked: "x", createdAt: "", updatedAt: "" });
    expect(pinChoices([summary("openai", "b"), summary("mistral", "home"), summary("openai", "default"), summary("openai", "a")])).toEqual([
      ["mistral", ["home"]],
      ["openai", ["b", "a"]],
    ]);
  });

  it("lists the keys each token is pinned to", async () => {
    await mountConnect();
    await createToken();
    const keysOf = (name: string): string | null | undefined =>
      allByTestId("token-row")
        .find((row) => row.dataset["name"] === name)
        ?.querySelector("[data-testid=token-keys]")?.textContent;
    expect(keysOf("old")).toBe("openai: client-a, mistral: home");
    expect(keysOf("my-app")).toBe("Default keys");
  });

  it("does not show the token after the screen is mounted again", async () => {
    const first = await mountConnect();
    await createToken();
    first.screen.dispose?.();
    document.body.replaceChildren();

    const second = connectScreen(context(status()));
    mount(second.element);
    await settle();
    expect(allByTestId("token-value")).toHaveLength(0);
    expect(document.body.innerHTML).not.toContain(CREATED.token);
    expect(byTestId("token-reveal").hidden).toBe(true);
  });

  it("copies the token to the clipboard", async () => {
    const writeText = vi.fn().mockResolvedValue(undefined);
    vi.stubGlobal("navigator", { ...navigator, clipboard: { writeText } });
    await mountConnect();
    await createToken();
    byTestId("token-copy").click();
    await settle();
    expect(writeText).toHaveBeenCalledWith(CREATED.token);
    expect(byTestId("token-reveal").textContent).toContain("Copied.");
  });

  it("revokes a token after confirmation", async () => {
    const { calls } = await mountConnect();
    byTestId("token-revoke").click();
    byTestId("confirm-cancel").click();
    await settle();
    expect(callsOf(calls, "token_revoke")).toEqual([]);

    byTestId("token-revoke").click();
    byTestId("confirm-accept").click();
    await settle();
    expect(callsOf(calls, "token_revoke")).toEqual([{ name: "old" }]);
  });
});

describe("connect screen snippets", () => {
  it("use the serving port and a placeholder before a token exists", async () => {
    await mountConnect();
    const code = snippetText("kaibanjs-openai");
    expect(code).toContain('apiBaseUrl: "http://127.0.0.1:51234/llm/openai"');
    expect(code).toContain(`apiKey: "${TOKEN_PLACEHOLDER}"`);
  });

  it("use the just-created token", async () => {
    await mountConnect();
    await createToken();
    for (const id of ["kaibanjs-anthropic", "openai-sdk", "anthropic-sdk", "curl"]) {
      const code = snippetText(id);
      expect(code, id).toContain(CREATED.token);
      expect(code, id).toContain("127.0.0.1:51234");
      expect(code, id).not.toContain(TOKEN_PLACEHOLDER);
    }
  });

  it("fall back to the configured port while the proxy is stopped", async () => {
    const { calls } = await mountConnect(status({ proxy: { state: "stopped", address: null, port: null, error: null } }));
    expect(callsOf(calls, "settings_get")).toHaveLength(1);
    expect(snippetText("curl")).toContain("http://127.0.0.1:7600/llm/openai/chat/completions");
    expect(byTestId("snippet-note").textContent).toContain("not running");
  });

  it("follow a port change from a status event", async () => {
    const { screen } = await mountConnect();
    screen.onStatus?.(status({ proxy: { state: "serving", address: "127.0.0.1:40001", port: 40001, error: null } }));
    expect(snippetText("openai-sdk")).toContain('baseURL: "http://127.0.0.1:40001/llm/openai"');
  });
});

describe("snippets", () => {
  it("use the option names KaibanJS reads per provider", () => {
    expect(kaibanSnippet("openai", 7447, null).code).toContain('apiBaseUrl: "http://127.0.0.1:7447/llm/openai"');
    expect(kaibanSnippet("anthropic", 7447, null).code).toContain('apiBaseUrl: "http://127.0.0.1:7447/llm/anthropic"');
    expect(kaibanSnippet("google", 7447, null).code).toContain('apiBaseUrl: "http://127.0.0.1:7447/llm/google"');
    const mistral = kaibanSnippet("mistral", 7447, null).code;
    expect(mistral).toContain('serverURL: "http://127.0.0.1:7447/llm/mistral"');
    expect(mistral).not.toContain("apiBaseUrl");
  });

  it("contain the port and token in every snippet", () => {
    const snippets = allSnippets(9123, "kp_token_value");
    expect(snippets.map((snippet) => snippet.id)).toEqual([
      "kaibanjs-openai",
      "kaibanjs-anthropic",
      "kaibanjs-google",
      "kaibanjs-mistral",
      "openai-sdk",
      "anthropic-sdk",
      "curl",
    ]);
    for (const snippet of snippets) {
      expect(snippet.code, snippet.id).toContain("http://127.0.0.1:9123/llm/");
      expect(snippet.code, snippet.id).toContain("kp_token_value");
    }
  });

  it("send the token as a Bearer header in curl", () => {
    const curl = allSnippets(7447, "kp_x").find((snippet) => snippet.id === "curl")?.code ?? "";
    expect(curl).toContain('-H "Authorization: Bearer kp_x"');
    expect(curl).toContain("curl http://127.0.0.1:7447/llm/openai/chat/completions");
  });

  it("builds the proxy base URL", () => {
    expect(proxyBaseUrl(7447, "groq")).toBe("http://127.0.0.1:7447/llm/groq");
  });
});
