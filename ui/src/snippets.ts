// Ready-to-paste client configuration for the local proxy.
//
// The KaibanJS option names match what tests/e2e/test/kaibanjs.test.js runs
// against the proxy with KaibanJS 0.23.1: `apiBaseUrl` for OpenAI, Anthropic
// and Google, and `serverURL` for Mistral, whose SDK ignores `apiBaseUrl`.

/** Shown in place of a client token until the user creates one. */
export const TOKEN_PLACEHOLDER = "<YOUR_KEYPORT_TOKEN>";

export type KaibanProvider = "openai" | "anthropic" | "google" | "mistral";

export const KAIBAN_PROVIDERS: readonly KaibanProvider[] = ["openai", "anthropic", "google", "mistral"];

/** A model of each provider that KaibanJS supports, used only as an example. */
const EXAMPLE_MODELS: Record<KaibanProvider, string> = {
  openai: "gpt-4o-mini",
  anthropic: "claude-3-5-haiku-20241022",
  google: "gemini-2.0-flash",
  mistral: "mistral-small-latest",
};

export interface Snippet {
  id: string;
  title: string;
  language: "js" | "sh";
  code: string;
}

/** Returns the proxy base URL of `provider`, for example http://127.0.0.1:7447/llm/openai. */
export function proxyBaseUrl(port: number, provider: string): string {
  return `http://127.0.0.1:${port}/llm/${provider}`;
}

/** Builds the KaibanJS agent configuration for `provider`. */
export function kaibanSnippet(provider: KaibanProvider, port: number, token: string | null): Snippet {
  const baseUrlOption = provider === "mistral" ? "serverURL" : "apiBaseUrl";
  const code = [
    `import { Agent } from "kaibanjs";`,
    ``,
    `const agent = new Agent({`,
    `  name: "Assistant",`,
    `  role: "Helper",`,
    `  goal: "Answer questions",`,
    `  background: "Calls ${provider} through Keyport",`,
    `  llmConfig: {`,
    `    provider: ${JSON.stringify(provider)},`,
    `    model: ${JSON.stringify(EXAMPLE_MODELS[provider])},`,
    `    apiKey: ${JSON.stringify(token ?? TOKEN_PLACEHOLDER)},`,
    `    ${baseUrlOption}: ${JSON.stringify(proxyBaseUrl(port, provider))},`,
    `  },`,
    `});`,
  ].join("\n");
  return { id: `kaibanjs-${provider}`, title: `KaibanJS (${provider})`, language: "js", code };
}

/** Builds the OpenAI SDK client (`openai` on npm). */
export function openaiSdkSnippet(port: number, token: string | null): Snippet {
  const code = [
    `import OpenAI from "openai";`,
    ``,
    `const client = new OpenAI({`,
    `  apiKey: ${JSON.stringify(token ?? TOKEN_PLACEHOLDER)},`,
    `  baseURL: ${JSON.stringify(proxyBaseUrl(port, "openai"))},`,
    `});`,
  ].join("\n");
  return { id: "openai-sdk", title: "OpenAI SDK", language: "js", code };
}

/** Builds the Anthropic SDK client (`@anthropic-ai/sdk` on npm). */
export function anthropicSdkSnippet(port: number, token: string | null): Snippet {
  const code = [
    `import Anthropic from "@anthropic-ai/sdk";`,
    ``,
    `const client = new Anthropic({`,
    `  apiKey: ${JSON.stringify(token ?? TOKEN_PLACEHOLDER)},`,
    `  baseURL: ${JSON.stringify(proxyBaseUrl(port, "anthropic"))},`,
    `});`,
  ].join("\n");
  return { id: "anthropic-sdk", title: "Anthropic SDK", language: "js", code };
}

/** Builds a curl request to OpenAI chat completions through the proxy. */
export function curlSnippet(port: number, token: string | null): Snippet {
  const body = JSON.stringify({ model: EXAMPLE_MODELS.openai, messages: [{ role: "user", content: "Hello" }] });
  const code = [
    `curl ${proxyBaseUrl(port, "openai")}/chat/completions \\`,
    `  -H "Authorization: Bearer ${token ?? TOKEN_PLACEHOLDER}" \\`,
    `  -H "Content-Type: application/json" \\`,
    `  -d '${body}'`,
  ].join("\n");
  return { id: "curl", title: "curl", language: "sh", code };
}

/** Builds every snippet for `port`, with `token` or the placeholder. */
export function allSnippets(port: number, token: string | null): Snippet[] {
  return [
    ...KAIBAN_PROVIDERS.map((provider) => kaibanSnippet(provider, port, token)),
    openaiSdkSnippet(port, token),
    anthropicSdkSnippet(port, token),
    curlSnippet(port, token),
  ];
}
