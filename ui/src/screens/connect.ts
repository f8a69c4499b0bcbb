// The Connect screen: client tokens and ready-to-paste client snippets.
//
// A created token is shown once. It lives only in this screen's closure
// until the user clicks Done or leaves the screen. The shell stores only a
// hash, so neither the list nor a later visit can show it again.

import { keysList, settingsGet, tokenCreate, tokenPin, tokenRevoke, tokensList } from "../api/commands";
import { toAppError } from "../api/errors";
import { copyButton } from "../components/copy";
import { confirmDialog } from "../components/dialog";
import { append, clearMessage, field, h, messageRegion, replaceChildren, showMessage } from "../dom";
import { formatDateTime } from "../format";
import type { AppStatus } from "../generated/AppStatus";
import type { CreatedToken } from "../generated/CreatedToken";
import type { KeyPin } from "../generated/KeyPin";
import type { KeySummary } from "../generated/KeySummary";
import type { TokenInfo } from "../generated/TokenInfo";
import type { AppContext, Screen } from "../screen";
import { allSnippets, type Snippet } from "../snippets";

export function connectScreen(context: AppContext): Screen {
  let created: CreatedToken | null = null;
  let port: number | null = context.status().proxy.port;

  const tokens = createTokenSection({
    onCreated: (token) => {
      created = token;
      snippets.render();
    },
    onDismissed: () => {
      created = null;
      snippets.render();
    },
  });
  const snippets = createSnippetSection(() => port, () => created?.token ?? null);

  // While the proxy is not serving there is no live port, so the snippets
  // use the configured one and the note above them mentions it.
  const loadConfiguredPort = async (): Promise<void> => {
    try {
      const settings = await settingsGet();
      if (port === null) {
        snippets.setConfiguredPort(settings.port);
      }
    } catch (error) {
      snippets.showError(toAppError(error).message);
    }
  };
  if (port === null) {
    void loadConfiguredPort();
  }

  return {
    element: h(
      "main",
      { class: "screen", testid: "screen-connect", "aria-labelledby": "connect-title" },
      h("h1", { id: "connect-title" }, "Connect your apps"),
      h("p", { class: "muted" }, "Apps send requests to Keyport with a client token in place of a provider key. Keyport checks the token and adds the stored key."),
      tokens.element,
      snippets.element,
    ),
    onStatus: (status: AppStatus) => {
      port = status.proxy.port;
      snippets.render();
      if (port === null) {
        void loadConfiguredPort();
      }
    },
    dispose: () => {
      created = null;
    },
  };
}

/**
 * Groups key labels by provider, for providers that have a key labelled
 * other than "default"; only those offer a choice.
 */
export function pinChoices(keys: readonly KeySummary[]): [string, string[]][] {
  const labels = new Map<string, string[]>();
  for (const key of keys) {
    if (key.label !== "default") {
      labels.set(key.provider, [...(labels.get(key.provider) ?? []), key.label]);
    }
  }
  return [...labels.entries()].sort(([a], [b]) => a.localeCompare(b));
}

/** Builds the key choice for one provider, set to `current` ("" for the default key). */
function pinSelect(provider: string, labels: readonly string[], current: string, testid: string): HTMLSelectElement {
  const select = h("select", { testid, "data-provider": provider }, h("option", { value: "" }, "Default key"), labels.map((label) => h("option", { value: label }, label)));
  select.value = current;
  return select;
}

/** Reads the pins that `selects` choose; "Default key" pins nothing. */
function chosenPins(selects: readonly HTMLSelectElement[]): KeyPin[] {
  return selects.filter((select) => select.value !== "").map((select) => ({ provider: select.dataset["provider"] ?? "", label: select.value }));
}

/** Names the keys a token is pinned to, such as "openai: client-a". */
export function describePins(info: TokenInfo): string {
  if (info.keys.length === 0) {
    return "Default keys";
  }
  return info.keys.map((pin) => `${pin.provider}: ${pin.label}`).join(", ");
}

interface TokenCallbacks {
  onCreated(token: CreatedToken): void;
  onDismissed(): void;
}

function createTokenSection(callbacks: TokenCallbacks): { element: HTMLElement } {
  const name = h("input", { type: "text", required: true, autocomplete: "off", spellcheck: "false", testid: "token-name" });
  const submit = h("button", { type: "submit", class: "primary", testid: "token-submit" }, "Create token");
  const message = messageRegion("token-message");
  const reveal = h("div", { class: "reveal", testid: "token-reveal", hidden: true, "aria-live": "polite" });
  const list = h("tbody", { testid: "token-list" });
  const listMessage = messageRegion("token-list-message");

  const pins = h("fieldset", { class: "pins", testid: "token-pins", hidden: true });
  const form = h(
    "form",
    { class: "inline-form", testid: "token-form", "aria-label": "Create a client token" },
    field("Token name", name, "For example the project or app that will use it."),
    pins,
    submit,
  );

  // One choice per provider that has a labelled key besides its default.
  let keyChoices: Array<[string, string[]]> = [];
  const loadKeyChoices = async (): Promise<void> => {
    let keys: KeySummary[];
    try {
      keys = await keysList();
    } catch {
      // A locked vault lists no keys, so the token gets the default keys.
      keys = [];
    }
    keyChoices = pinChoices(keys);
    replaceChildren(
      pins,
      h("legend", null, "Keys"),
      h("p", { class: "hint" }, "Requests with this token use the chosen key. A pinned token cannot pick another key."),
      keyChoices.map(([provider, labels]) => field(provider, pinSelect(provider, labels, "", "token-pin"))),
    );
    pins.hidden = keyChoices.length === 0;
    // The rows offer to change their keys once the choices are known.
    await reload();
  };

  const savePins = async (info: TokenInfo, selects: HTMLSelectElement[]): Promise<void> => {
    // Pins of providers that offer no choice here stay as they are.
    const unchangedPins = info.keys.filter((pin) => !keyChoices.some(([provider]) => provider === pin.provider));
    try {
      await tokenPin(info.name, [...unchangedPins, ...chosenPins(selects)]);
      showMessage(listMessage, `Saved the keys of the token "${info.name}". A running proxy uses them within about a second.`, "ok");
      await reload();
    } catch (error) {
      showMessage(listMessage, toAppError(error).message, "error");
    }
  };

  const editPins = (cell: HTMLTableCellElement, info: TokenInfo): void => {
    const current = new Map(info.keys.map((pin) => [pin.provider, pin.label]));
    const selects = keyChoices.map(([provider, labels]) => pinSelect(provider, labels, current.get(provider) ?? "", "token-row-pin"));
    const save = h("button", { type: "button", class: "primary", testid: "token-pins-save" }, "Save");
    const cancel = h("button", { type: "button", testid: "token-pins-cancel" }, "Cancel");
    save.addEventListener("click", () => void savePins(info, selects));
    cancel.addEventListener("click", () => void reload());
    replaceChildren(cell, h("div", { class: "pin-editor" }, selects.map((select, index) => field(keyChoices[index]?.[0] ?? "", select)), save, cancel));
    selects[0]?.focus();
  };

  const keysCell = (info: TokenInfo): HTMLTableCellElement => {
    const cell = h("td", null, h("span", { testid: "token-keys" }, describePins(info)));
    if (keyChoices.length > 0) {
      const change = h("button", { type: "button", class: "link", testid: "token-pins-edit", "aria-label": `Change the keys of the token ${info.name}` }, "Change");
      change.addEventListener("click", () => editPins(cell, info));
      append(cell, [" ", change]);
    }
    return cell;
  };

  const reload = async (): Promise<void> => {
    try {
      const infos = await tokensList();
      replaceChildren(list, infos.length === 0 ? h("tr", null, h("td", { colspan: 5, class: "muted" }, "No tokens yet.")) : infos.map(tokenRow));
    } catch (error) {
      showMessage(listMessage, toAppError(error).message, "error");
    }
  };

  const tokenRow = (info: TokenInfo): HTMLTableRowElement =>
    h(
      "tr",
      { testid: "token-row", "data-name": info.name },
      h("td", null, info.name),
      h("td", { class: "mono" }, `${info.prefix}…`),
      h("td", null, h("time", { datetime: info.createdAt }, formatDateTime(info.createdAt))),
      keysCell(info),
      h("td", { class: "actions" }, h("button", { type: "button", class: "danger", testid: "token-revoke", on: { click: () => void revoke(info.name) } }, "Revoke")),
    );

  const revoke = async (tokenName: string): Promise<void> => {
    const confirmed = await confirmDialog({
      title: `Revoke the token "${tokenName}"?`,
      message: "Apps that use it get 401 errors within about a second. You can create a new token at any time.",
      confirmLabel: "Revoke token",
      danger: true,
    });
    if (!confirmed) {
      return;
    }
    try {
      await tokenRevoke(tokenName);
      showMessage(listMessage, `Revoked the token "${tokenName}".`, "ok");
      await reload();
    } catch (error) {
      showMessage(listMessage, toAppError(error).message, "error");
    }
  };

  const showCreated = (token: CreatedToken): void => {
    const copyStatus = h("span", { class: "copy-status", "aria-live": "polite" });
    const value = h("input", { type: "text", readonly: true, class: "mono token-value", testid: "token-value", "aria-label": `Client token ${token.name}` });
    value.value = token.token;
    const done = h("button", { type: "button", testid: "token-done" }, "Done");
    done.addEventListener("click", () => {
      value.value = "";
      replaceChildren(reveal);
      reveal.hidden = true;
      callbacks.onDismissed();
      name.focus();
    });
    replaceChildren(
      reveal,
      h("p", null, h("strong", null, `Token "${token.name}" created. `), "Copy it now: you won't see it again, because Keyport stores only a hash of it."),
      h("div", { class: "row" }, value, copyButton("token-copy", () => value.value, copyStatus), done),
      copyStatus,
    );
    reveal.hidden = false;
    value.focus();
    value.select();
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void create();
  });

  const create = async (): Promise<void> => {
    const tokenName = name.value.trim();
    if (tokenName === "") {
      showMessage(message, "Enter a name for the token.", "error");
      name.focus();
      return;
    }
    clearMessage(message);
    submit.disabled = true;
    try {
      const token = await tokenCreate(tokenName, chosenPins(Array.from(pins.querySelectorAll("select"))));
      name.value = "";
      for (const select of pins.querySelectorAll<HTMLSelectElement>("select")) {
        select.value = "";
      }
      showCreated(token);
      callbacks.onCreated(token);
      await reload();
    } catch (error) {
      showMessage(message, toAppError(error).message, "error");
    } finally {
      submit.disabled = false;
    }
  };

  void loadKeyChoices();
  return {
    element: h(
      "section",
      { class: "card", "aria-labelledby": "tokens-title" },
      h("h2", { id: "tokens-title" }, "Client tokens"),
      form,
      message,
      reveal,
      listMessage,
      h(
        "table",
        { class: "tokens" },
        h("thead", null, h("tr", null, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Starts with"), h("th", { scope: "col" }, "Created"), h("th", { scope: "col" }, "Keys"), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
        list,
      ),
      h("p", { class: "hint" }, "A token uses each provider's default key unless it is pinned to a labelled one. Change shows the choices once a provider has a labelled key."),
    ),
  };
}

interface SnippetSection {
  element: HTMLElement;
  render(): void;
  setConfiguredPort(port: number): void;
  showError(text: string): void;
}

function createSnippetSection(livePort: () => number | null, token: () => string | null): SnippetSection {
  let configuredPort: number | null = null;
  let selected = "kaibanjs-openai";

  const select = h("select", { testid: "snippet-select" });
  const code = h("code", { testid: "snippet-code" });
  const note = h("p", { class: "muted", testid: "snippet-note", "aria-live": "polite" });
  const copyStatus = h("span", { class: "copy-status", "aria-live": "polite" });
  const message = messageRegion("snippet-message");
  select.addEventListener("change", () => {
    selected = select.value;
    render();
  });

  const render = (): void => {
    const port = livePort() ?? configuredPort;
    if (port === null) {
      note.textContent = "Loading the proxy port…";
      code.textContent = "";
      return;
    }
    const snippets = allSnippets(port, token());
    const current: Snippet = snippets.find((snippet) => snippet.id === selected) ?? (snippets[0] as Snippet);
    replaceChildren(select, snippets.map((snippet) => h("option", { value: snippet.id, selected: snippet.id === current.id }, snippet.title)));
    select.value = current.id;
    code.textContent = current.code;
    code.className = `language-${current.language}`;
    const portNote = livePort() === null ? `The proxy is not running, so these use the configured port ${port}. ` : "";
    const tokenNote = token() === null ? "Replace <YOUR_KEYPORT_TOKEN> with a client token." : "These use the token you just created.";
    note.textContent = portNote + tokenNote;
  };

  render();
  return {
    element: h(
      "section",
      { class: "card", testid: "snippets", "aria-labelledby": "snippets-title" },
      h("h2", { id: "snippets-title" }, "Snippets"),
      h("div", { class: "row" }, field("Client", select), copyButton("snippet-copy", () => code.textContent ?? "", copyStatus), copyStatus),
      note,
      message,
      h("pre", { class: "snippet" }, code),
    ),
    render,
    setConfiguredPort: (port) => {
      configuredPort = port;
      render();
    },
    showError: (text) => showMessage(message, text, "error"),
  };
}
