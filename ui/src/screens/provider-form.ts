// The form for custom providers and base-URL overrides of built-in ones.
// The shell validates the id and URL again and writes config.toml.

import { providerSave } from "../api/commands";
import { toAppError } from "../api/errors";
import { clearMessage, field, h, messageRegion, showMessage } from "../dom";
import type { AuthStyle } from "../generated/AuthStyle";
import type { ProviderInfo } from "../generated/ProviderInfo";
import type { ProviderInput } from "../generated/ProviderInput";

const AUTH_STYLES: ReadonlyArray<{ value: AuthStyle; label: string }> = [
  { value: "bearer", label: "Authorization: Bearer KEY" },
  { value: "anthropic", label: "x-api-key: KEY (Anthropic)" },
  { value: "header", label: "Custom header" },
  { value: "query", label: "Query parameter" },
  { value: "none", label: "No key" },
];

/** The provider id syntax that the core accepts in config.toml and the vault. */
const PROVIDER_ID_PATTERN = "[a-z0-9][a-z0-9_\\-]{0,63}";

/** True for the auth styles that need a header or query parameter name. */
export function needsAuthName(auth: AuthStyle): boolean {
  return auth === "header" || auth === "query";
}

export interface ProviderForm {
  element: HTMLElement;
  /** Fills the form with `provider` so its base URL or auth style can be changed. */
  edit(provider: ProviderInfo): void;
}

/** Builds the provider form; `onSaved` receives the provider list the shell returns. */
export function createProviderForm(onSaved: (providers: ProviderInfo[]) => void): ProviderForm {
  const id = h("input", { type: "text", required: true, pattern: PROVIDER_ID_PATTERN, autocomplete: "off", spellcheck: "false", testid: "provider-id" });
  const baseUrl = h("input", { type: "url", required: true, autocomplete: "off", spellcheck: "false", testid: "provider-base-url", placeholder: "https://api.example.com/v1" });
  const auth = h("select", { testid: "provider-auth" }, AUTH_STYLES.map((style) => h("option", { value: style.value }, style.label)));
  const authName = h("input", { type: "text", autocomplete: "off", spellcheck: "false", testid: "provider-auth-name", disabled: true });
  const submit = h("button", { type: "submit", class: "primary", testid: "provider-submit" }, "Save provider");
  const clear = h("button", { type: "reset", testid: "provider-clear" }, "Clear");
  const message = messageRegion("provider-message");

  const syncAuthName = (): void => {
    const required = needsAuthName(auth.value as AuthStyle);
    authName.disabled = !required;
    authName.required = required;
  };
  auth.addEventListener("change", syncAuthName);

  const form = h(
    "form",
    { class: "card", testid: "provider-form", "aria-labelledby": "provider-form-title" },
    h("h2", { id: "provider-form-title" }, "Custom providers and base URLs"),
    h("p", { class: "muted" }, "Use a built-in id (such as openai) to send its requests to another base URL, for example a company gateway. Use a new id to add an OpenAI-compatible or other service."),
    h(
      "div",
      { class: "row" },
      field("Provider id", id, "1 to 64 lowercase letters, digits, - or _, starting with a letter or digit. Requests go to /llm/ID/…"),
      field("Base URL", baseUrl),
      field("Key sent as", auth),
      field("Header or query parameter name", authName, "Only for a custom header or query parameter, for example api-key."),
    ),
    message,
    h("div", { class: "actions" }, clear, submit),
  );

  form.addEventListener("reset", () => {
    clearMessage(message);
    queueMicrotask(syncAuthName);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void save();
  });

  const save = async (): Promise<void> => {
    const input: ProviderInput = {
      id: id.value.trim(),
      baseUrl: baseUrl.value.trim(),
      auth: auth.value as AuthStyle,
      authName: needsAuthName(auth.value as AuthStyle) ? authName.value.trim() : null,
    };
    const problem = validateProvider(input);
    if (problem !== null) {
      showMessage(message, problem, "error");
      return;
    }
    clearMessage(message);
    submit.disabled = true;
    try {
      const providers = await providerSave(input);
      showMessage(message, `Saved the provider ${input.id}.`, "ok");
      onSaved(providers);
    } catch (error) {
      showMessage(message, toAppError(error).message, "error");
    } finally {
      submit.disabled = false;
    }
  };

  return {
    element: form,
    edit: (provider) => {
      id.value = provider.id;
      baseUrl.value = provider.baseUrl;
      auth.value = provider.auth;
      authName.value = provider.authName ?? "";
      syncAuthName();
      clearMessage(message);
      baseUrl.focus();
    },
  };
}

/**
 * Checks what the browser can check before the round trip: the id syntax,
 * an http or https base URL, and a name for header and query auth. Returns
 * the problem, or null.
 */
export function validateProvider(input: ProviderInput): string | null {
  if (!new RegExp(`^${PROVIDER_ID_PATTERN}$`).test(input.id)) {
    return `The provider id "${input.id}" is invalid. Use 1 to 64 lowercase letters, digits, - or _, starting with a letter or digit.`;
  }
  let url: URL;
  try {
    url = new URL(input.baseUrl);
  } catch {
    return `The base URL "${input.baseUrl}" is not a valid URL. Enter a full URL such as https://api.example.com/v1.`;
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    return `The base URL must start with https:// or http://, not ${url.protocol}//.`;
  }
  if (needsAuthName(input.auth) && (input.authName ?? "") === "") {
    return `Enter the ${input.auth === "header" ? "header" : "query parameter"} name that carries the key.`;
  }
  return null;
}
