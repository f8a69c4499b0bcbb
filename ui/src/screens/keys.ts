// The Keys screen: stored keys per provider, the add/replace form, key tests
// and removal, and the provider form for custom providers and base URLs.
//
// A provider key typed here goes from the input straight into `key_set`.
// The input is cleared before the command is sent and the value lives only
// in a local of the submit handler, so no screen state keeps it. JavaScript
// strings cannot be zeroized, so the engine frees it at garbage collection.

import { keyRemove, keySet, keyTest, keysList, providerReset, providersList } from "../api/commands";
import { toAppError } from "../api/errors";
import { confirmDialog } from "../components/dialog";
import { clearMessage, field, h, messageRegion, replaceChildren, showMessage } from "../dom";
import { formatDate } from "../format";
import type { KeySummary } from "../generated/KeySummary";
import type { KeyTestResult } from "../generated/KeyTestResult";
import type { ProviderInfo } from "../generated/ProviderInfo";
import type { Screen } from "../screen";
import { createProviderForm } from "./provider-form";

/** Label shown for a key saved with the empty label, which the core stores as "default". */
const DEFAULT_LABEL = "default";

/** The key label syntax the vault accepts. */
const LABEL_PATTERN = "[A-Za-z0-9][A-Za-z0-9._\\-]{0,63}";

export function keysScreen(): Screen {
  let providers: ProviderInfo[] = [];
  let keys: KeySummary[] = [];

  const list = h("div", { class: "provider-list", testid: "provider-list", "aria-busy": "true" });
  const listMessage = messageRegion("keys-message");
  const keyForm = createKeyForm(() => void reload());
  const providerForm = createProviderForm((updated) => {
    providers = updated;
    render();
    keyForm.setProviders(providers);
  });

  const render = (): void => {
    const known = new Set(providers.map((provider) => provider.id));
    const orphans = [...new Set(keys.filter((key) => !known.has(key.provider)).map((key) => key.provider))];
    replaceChildren(
      list,
      providers.map((provider) => providerCard(provider, keysOf(provider.id))),
      orphans.map((id) => orphanCard(id, keysOf(id))),
    );
  };
  const keysOf = (provider: string): KeySummary[] => keys.filter((key) => key.provider === provider);

  const reload = async (): Promise<void> => {
    list.setAttribute("aria-busy", "true");
    try {
      [providers, keys] = await Promise.all([providersList(), keysList()]);
      clearMessage(listMessage);
      keyForm.setProviders(providers);
      render();
    } catch (error) {
      showMessage(listMessage, toAppError(error).message, "error");
    } finally {
      list.setAttribute("aria-busy", "false");
    }
  };

  const providerCard = (provider: ProviderInfo, providerKeys: KeySummary[]): HTMLElement => {
    const badges = [
      provider.builtIn ? null : h("span", { class: "badge" }, "custom"),
      provider.overridden ? h("span", { class: "badge" }, "base URL changed") : null,
      provider.needsKey ? null : h("span", { class: "badge" }, "no key needed"),
    ];
    const edit = h("button", { type: "button", testid: "provider-edit", on: { click: () => providerForm.edit(provider) } }, "Edit");
    const reset =
      provider.builtIn && !provider.overridden
        ? null
        : h("button", { type: "button", testid: "provider-reset", on: { click: () => void resetProvider(provider) } }, provider.builtIn ? "Reset base URL" : "Delete");
    return h(
      "article",
      { class: "card provider", testid: "provider-card", "data-provider": provider.id, "aria-labelledby": `provider-${provider.id}` },
      h("header", null, h("h2", { id: `provider-${provider.id}` }, provider.id), badges, h("div", { class: "actions" }, edit, reset)),
      h("p", { class: "muted mono" }, provider.baseUrl),
      provider.needsKey || providerKeys.length > 0 ? keyTable(provider.id, providerKeys) : null,
    );
  };

  const orphanCard = (id: string, providerKeys: KeySummary[]): HTMLElement =>
    h(
      "article",
      { class: "card provider", testid: "provider-card", "data-provider": id },
      h("header", null, h("h2", null, id), h("span", { class: "badge" }, "unknown provider")),
      keyTable(id, providerKeys),
    );

  const keyTable = (provider: string, providerKeys: KeySummary[]): HTMLElement => {
    if (providerKeys.length === 0) {
      return h("p", { class: "muted", testid: "no-keys" }, "No key stored.");
    }
    return h(
      "table",
      { class: "keys" },
      h("caption", { class: "visually-hidden" }, `Keys for ${provider}`),
      h("thead", null, h("tr", null, h("th", { scope: "col" }, "Label"), h("th", { scope: "col" }, "Key"), h("th", { scope: "col" }, "Added"), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
      h("tbody", null, providerKeys.map((key) => keyRows(key))),
    );
  };

  // Each key gets a second row below it for the test result, so the result
  // can span the table's width.
  const keyRows = (key: KeySummary): HTMLTableRowElement[] => {
    const label = key.label === "" ? DEFAULT_LABEL : key.label;
    const result = h("td", { class: "test-result", testid: "key-test-result", "aria-live": "polite", colspan: 4 });
    const resultRow = h("tr", { class: "result-row", hidden: true }, result);
    const test = h("button", { type: "button", testid: "key-test" }, "Test");
    test.addEventListener("click", () => {
      resultRow.hidden = false;
      void runTest(key, test, result);
    });
    const replace = h("button", { type: "button", testid: "key-replace", on: { click: () => keyForm.prefill(key.provider, key.label) } }, "Replace");
    const remove = h("button", { type: "button", class: "danger", testid: "key-remove", on: { click: () => void removeKey(key) } }, "Remove");
    const row = h(
      "tr",
      { testid: "key-row", "data-provider": key.provider, "data-label": key.label },
      h("td", null, label),
      h("td", { class: "mono" }, key.masked),
      h("td", null, h("time", { datetime: key.createdAt }, formatDate(key.createdAt))),
      h("td", { class: "actions" }, test, replace, remove),
    );
    return [row, resultRow];
  };

  const removeKey = async (key: KeySummary): Promise<void> => {
    const label = key.label === "" ? DEFAULT_LABEL : key.label;
    const confirmed = await confirmDialog({
      title: `Remove the ${key.provider} key "${label}"?`,
      message: "Requests to this provider fail until you add a key again. Keyport cannot restore a removed key.",
      confirmLabel: "Remove key",
      danger: true,
    });
    if (!confirmed) {
      return;
    }
    try {
      await keyRemove(key.provider, key.label);
      showMessage(listMessage, `Removed the ${key.provider} key "${label}".`, "ok");
      await reload();
    } catch (error) {
      showMessage(listMessage, toAppError(error).message, "error");
    }
  };

  const resetProvider = async (provider: ProviderInfo): Promise<void> => {
    const confirmed = await confirmDialog(
      provider.builtIn
        ? { title: `Reset ${provider.id} to its default base URL?`, message: "Requests go to the provider's own API again.", confirmLabel: "Reset" }
        : { title: `Delete the custom provider ${provider.id}?`, message: "Its keys stay in the vault, but requests to it fail until you add it again.", confirmLabel: "Delete", danger: true },
    );
    if (!confirmed) {
      return;
    }
    try {
      providers = await providerReset(provider.id);
      keyForm.setProviders(providers);
      render();
    } catch (error) {
      showMessage(listMessage, toAppError(error).message, "error");
    }
  };

  void reload();
  return {
    element: h(
      "main",
      { class: "screen", testid: "screen-keys", "aria-labelledby": "keys-title" },
      h("h1", { id: "keys-title" }, "Provider keys"),
      keyForm.element,
      listMessage,
      list,
      providerForm.element,
    ),
  };
}

async function runTest(key: KeySummary, button: HTMLButtonElement, cell: HTMLElement): Promise<void> {
  button.disabled = true;
  button.textContent = "Testing…";
  cell.classList.remove("ok", "error");
  cell.textContent = `Testing the ${key.provider} key…`;
  try {
    const result = await keyTest(key.provider, key.label);
    cell.textContent = describeTest(result);
    cell.classList.add(result.ok ? "ok" : "error");
  } catch (error) {
    cell.textContent = toAppError(error).message;
    cell.classList.add("error");
  } finally {
    button.disabled = false;
    button.textContent = "Test";
  }
}

/** Describes a key test result, for example "OK: HTTP 200 in 312 ms. 42 models". */
export function describeTest(result: KeyTestResult): string {
  const verdict = result.ok ? "OK" : "Failed";
  const status = result.status === null ? "no HTTP status" : `HTTP ${result.status}`;
  const detail = result.message === "" ? "" : ` ${result.message}`;
  return `${verdict}: ${status} in ${Math.round(result.latencyMs)} ms.${detail}`;
}

interface KeyForm {
  element: HTMLElement;
  setProviders(providers: ProviderInfo[]): void;
  prefill(provider: string, label: string): void;
}

function createKeyForm(onSaved: () => void): KeyForm {
  const provider = h("select", { required: true, testid: "key-provider" });
  const label = h("input", { type: "text", pattern: LABEL_PATTERN, autocomplete: "off", spellcheck: "false", testid: "key-label", placeholder: DEFAULT_LABEL });
  const key = h("input", { type: "password", required: true, autocomplete: "off", spellcheck: "false", testid: "key-value" });
  const submit = h("button", { type: "submit", class: "primary", testid: "key-submit" }, "Save key");
  const message = messageRegion("key-message");

  const form = h(
    "form",
    { class: "card", testid: "key-form", "aria-labelledby": "key-form-title" },
    h("h2", { id: "key-form-title" }, "Add or replace a key"),
    h(
      "div",
      { class: "row" },
      field("Provider", provider),
      field("Label", label, "Optional: letters, digits, . _ or -. Labels keep several keys for one provider apart."),
      field("API key", key, "Saving a key with an existing label replaces that key."),
    ),
    message,
    h("div", { class: "actions" }, submit),
  );

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void save();
  });

  const save = async (): Promise<void> => {
    // Read and clear in one step so the key leaves the DOM before the call.
    const secret = key.value.trim();
    key.value = "";
    const chosenProvider = provider.value;
    const chosenLabel = label.value.trim();
    if (secret === "" || chosenProvider === "") {
      showMessage(message, "Choose a provider and paste its API key.", "error");
      key.focus();
      return;
    }
    clearMessage(message);
    submit.disabled = true;
    try {
      const outcome = await keySet(chosenProvider, chosenLabel, secret);
      const shownLabel = chosenLabel === "" ? DEFAULT_LABEL : chosenLabel;
      showMessage(message, `${outcome === "added" ? "Added" : "Replaced"} the ${chosenProvider} key "${shownLabel}".`, "ok");
      label.value = "";
      onSaved();
    } catch (error) {
      showMessage(message, toAppError(error).message, "error");
      key.focus();
    } finally {
      submit.disabled = false;
    }
  };

  return {
    element: form,
    setProviders: (providers) => {
      const selected = provider.value;
      replaceChildren(
        provider,
        providers.filter((info) => info.needsKey).map((info) => h("option", { value: info.id }, info.id)),
      );
      if (selected !== "") {
        provider.value = selected;
      }
    },
    prefill: (providerId, keyLabel) => {
      provider.value = providerId;
      label.value = keyLabel;
      key.focus();
    },
  };
}
