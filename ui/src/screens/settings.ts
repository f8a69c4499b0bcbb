// The Settings screen: proxy, locking, request log settings, and the vault
// password change.

import { settingsGet, settingsSave, vaultChangePassword } from "../api/commands";
import { toAppError } from "../api/errors";
import { createStrengthMeter } from "../components/strength-meter";
import { clearMessage, field, h, messageRegion, replaceChildren, showMessage } from "../dom";
import type { Settings } from "../generated/Settings";
import type { Screen } from "../screen";

export function settingsScreen(): Screen {
  const settingsForm = createSettingsForm();
  return {
    element: h(
      "main",
      { class: "screen", testid: "screen-settings", "aria-labelledby": "settings-title" },
      h("h1", { id: "settings-title" }, "Settings"),
      settingsForm,
      createPasswordForm(),
    ),
  };
}

// Only the port has a known upper bound; the shell rejects other values it
// cannot use with `invalid_input`.
function numberInput(testid: string, min: number, max?: number): HTMLInputElement {
  return h("input", { type: "number", required: true, min, max, step: 1, testid });
}

function checkbox(testid: string, label: string, hint?: string): { input: HTMLInputElement; element: HTMLElement } {
  const input = h("input", { type: "checkbox", testid });
  const hintElement = hint === undefined ? null : h("span", { class: "hint" }, hint);
  return { input, element: h("label", { class: "check" }, input, h("span", null, label), hintElement) };
}

function createSettingsForm(): HTMLElement {
  const port = numberInput("settings-port", 1, 65535);
  const origins = createOriginsEditor();
  const requireToken = checkbox("settings-require-token", "Require a client token");
  const tokenWarning = h(
    "p",
    { class: "warning", testid: "settings-token-warning", role: "note", hidden: true },
    "Without a token, every program on this computer, and every web page from an allowed origin, can send requests with your keys.",
  );
  const autoLock = numberInput("settings-auto-lock", 0);
  const lockOnScreenLock = checkbox("settings-lock-on-screen-lock", "Lock when the screen locks");
  const startAtLogin = checkbox("settings-start-at-login", "Start Keyport at login");
  const retentionDays = numberInput("settings-retention-days", 1);
  const maxRows = numberInput("settings-max-rows", 1);
  const captureBodies = checkbox("settings-capture-bodies", "Store request and response bodies", "Prompts and replies are then written to the request log on disk.");
  const bodyLimit = numberInput("settings-body-limit", 1);
  const submit = h("button", { type: "submit", class: "primary", testid: "settings-submit" }, "Save settings");
  const message = messageRegion("settings-message");

  const syncDependents = (): void => {
    tokenWarning.hidden = requireToken.input.checked;
    bodyLimit.disabled = !captureBodies.input.checked;
  };
  requireToken.input.addEventListener("change", syncDependents);
  captureBodies.input.addEventListener("change", syncDependents);

  const fill = (settings: Settings): void => {
    port.value = String(settings.port);
    origins.set(settings.allowedOrigins);
    requireToken.input.checked = settings.requireToken;
    autoLock.value = String(settings.autoLockMinutes);
    lockOnScreenLock.input.checked = settings.lockOnScreenLock;
    startAtLogin.input.checked = settings.startAtLogin;
    retentionDays.value = String(settings.retentionDays);
    maxRows.value = String(settings.maxRows);
    captureBodies.input.checked = settings.captureBodies;
    bodyLimit.value = String(settings.bodyCaptureLimitKib);
    syncDependents();
  };

  const read = (): Settings => ({
    port: port.valueAsNumber,
    allowedOrigins: origins.get(),
    requireToken: requireToken.input.checked,
    autoLockMinutes: autoLock.valueAsNumber,
    lockOnScreenLock: lockOnScreenLock.input.checked,
    startAtLogin: startAtLogin.input.checked,
    retentionDays: retentionDays.valueAsNumber,
    maxRows: maxRows.valueAsNumber,
    captureBodies: captureBodies.input.checked,
    bodyCaptureLimitKib: bodyLimit.valueAsNumber,
  });

  const form = h(
    "form",
    { class: "card", testid: "settings-form", "aria-labelledby": "settings-proxy-title" },
    h("h2", { id: "settings-proxy-title" }, "Proxy"),
    field("Port", port, "The proxy listens on 127.0.0.1 at this port."),
    origins.element,
    requireToken.element,
    tokenWarning,
    h("h2", null, "Locking"),
    field("Lock after idle minutes", autoLock, "0 turns auto-lock off."),
    lockOnScreenLock.element,
    startAtLogin.element,
    h("h2", null, "Request log"),
    field("Keep requests for days", retentionDays),
    field("Keep at most rows", maxRows),
    captureBodies.element,
    field("Body capture limit (KiB)", bodyLimit, "Bodies longer than this are cut off."),
    message,
    h("div", { class: "actions" }, submit),
  );

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void save();
  });

  const save = async (): Promise<void> => {
    const settings = read();
    const problem = invalidNumber(settings);
    if (problem !== null) {
      showMessage(message, problem, "error");
      return;
    }
    clearMessage(message);
    submit.disabled = true;
    try {
      fill(await settingsSave(settings));
      showMessage(message, "Settings saved.", "ok");
    } catch (error) {
      showMessage(message, toAppError(error).message, "error");
    } finally {
      submit.disabled = false;
    }
  };

  const load = async (): Promise<void> => {
    try {
      fill(await settingsGet());
    } catch (error) {
      showMessage(message, toAppError(error).message, "error");
    }
  };
  void load();
  return form;
}

/** Returns a message for the first number field that is empty or not an integer, or null. */
function invalidNumber(settings: Settings): string | null {
  const fields: Array<[string, number]> = [
    ["Port", settings.port],
    ["Lock after idle minutes", settings.autoLockMinutes],
    ["Keep requests for days", settings.retentionDays],
    ["Keep at most rows", settings.maxRows],
    ["Body capture limit", settings.bodyCaptureLimitKib],
  ];
  const bad = fields.find(([, value]) => !Number.isInteger(value) || value < 0);
  return bad === undefined ? null : `${bad[0]} must be a whole number.`;
}

interface OriginsEditor {
  element: HTMLElement;
  set(origins: string[]): void;
  get(): string[];
}

/** Builds the list editor for allowed browser origins such as http://localhost:*. */
function createOriginsEditor(): OriginsEditor {
  let origins: string[] = [];
  const list = h("ul", { class: "origins", testid: "settings-origins" });
  const input = h("input", { type: "text", autocomplete: "off", spellcheck: "false", testid: "settings-origin-input", placeholder: "http://localhost:*" });
  const add = h("button", { type: "button", testid: "settings-origin-add" }, "Add origin");

  const render = (): void => {
    replaceChildren(
      list,
      origins.map((origin, index) =>
        h(
          "li",
          { testid: "settings-origin", "data-origin": origin },
          h("span", { class: "mono" }, origin),
          h("button", { type: "button", testid: "settings-origin-remove", "aria-label": `Remove ${origin}`, on: { click: () => remove(index) } }, "Remove"),
        ),
      ),
    );
  };
  const remove = (index: number): void => {
    origins = origins.filter((_, position) => position !== index);
    render();
    input.focus();
  };
  const addOrigin = (): void => {
    const origin = input.value.trim();
    if (origin !== "" && !origins.includes(origin)) {
      origins = [...origins, origin];
      render();
    }
    input.value = "";
    input.focus();
  };
  add.addEventListener("click", addOrigin);
  // Enter in this input adds the origin instead of submitting the whole form.
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      addOrigin();
    }
  });

  const element = h(
    "fieldset",
    { class: "origins-editor" },
    h("legend", null, "Allowed browser origins"),
    h("p", { class: "hint" }, "Web pages from these origins may call the proxy. * matches any port."),
    list,
    h("div", { class: "row" }, field("New origin", input), add),
  );
  return {
    element,
    set: (next) => {
      origins = [...next];
      render();
    },
    get: () => [...origins],
  };
}

function createPasswordForm(): HTMLElement {
  const current = h("input", { type: "password", required: true, autocomplete: "current-password", testid: "password-current" });
  const next = h("input", { type: "password", required: true, autocomplete: "new-password", testid: "password-new" });
  const confirm = h("input", { type: "password", required: true, autocomplete: "new-password", testid: "password-confirm" });
  const submit = h("button", { type: "submit", class: "primary", testid: "password-submit", disabled: true }, "Change password");
  const message = messageRegion("password-message");

  const update = (): void => {
    const matches = confirm.value !== "" && confirm.value === next.value;
    confirm.setAttribute("aria-invalid", String(confirm.value !== "" && !matches));
    submit.disabled = !(current.value !== "" && meter.current()?.acceptable === true && matches);
  };
  const meter = createStrengthMeter(next, update);
  current.addEventListener("input", update);
  confirm.addEventListener("input", update);

  const form = h(
    "form",
    { class: "card", testid: "password-form", "aria-labelledby": "password-title" },
    h("h2", { id: "password-title" }, "Change the vault password"),
    field("Current password", current),
    field("New password", next),
    meter.element,
    field("Confirm new password", confirm),
    message,
    h("div", { class: "actions" }, submit),
  );

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!submit.disabled) {
      void change();
    }
  });

  const change = async (): Promise<void> => {
    const oldPassword = current.value;
    const newPassword = next.value;
    current.value = "";
    next.value = "";
    confirm.value = "";
    meter.reset();
    clearMessage(message);
    submit.disabled = true;
    try {
      await vaultChangePassword(oldPassword, newPassword);
      showMessage(message, "Password changed. Use the new password next time you unlock.", "ok");
    } catch (error) {
      const appError = toAppError(error);
      const text = appError.code === "wrong_password" ? "The current password is wrong. Nothing was changed." : appError.message;
      showMessage(message, text, "error");
      current.focus();
    }
  };

  return form;
}
