// The two screens shown while the vault is closed: create (first run) and
// unlock. Passwords are read from the inputs at submit time, and the inputs
// are cleared as soon as the command has been sent.

import { vaultCreate, vaultUnlock } from "../api/commands";
import { toAppError } from "../api/errors";
import { createStrengthMeter } from "../components/strength-meter";
import { clearMessage, field, h, messageRegion, showMessage } from "../dom";
import type { AppContext, Screen } from "../screen";

function passwordInput(testid: string, autocomplete: string): HTMLInputElement {
  return h("input", { type: "password", required: true, autocomplete, spellcheck: "false", testid });
}

/** First-run screen: choose the vault password. */
export function createVaultScreen(context: AppContext): Screen {
  const password = passwordInput("create-password", "new-password");
  const confirm = passwordInput("create-confirm", "new-password");
  const submit = h("button", { type: "submit", class: "primary", testid: "create-submit", disabled: true }, "Create vault");
  const mismatch = h("p", { class: "field-error", testid: "create-mismatch", "aria-live": "polite", hidden: true }, "The passwords do not match.");
  const message = messageRegion("create-error");

  const update = (): void => {
    const strength = meter.current();
    const matches = confirm.value !== "" && confirm.value === password.value;
    mismatch.hidden = confirm.value === "" || matches;
    confirm.setAttribute("aria-invalid", String(!mismatch.hidden));
    submit.disabled = !(strength?.acceptable === true && matches);
  };
  const meter = createStrengthMeter(password, update);
  confirm.addEventListener("input", update);

  const form = h(
    "form",
    { class: "card narrow", testid: "create-form", "aria-labelledby": "create-title" },
    h("h1", { id: "create-title" }, "Create your Keyport vault"),
    h("p", null, "Keyport encrypts your provider API keys with this password. You type it each time you unlock Keyport."),
    h(
      "p",
      { class: "warning", testid: "create-warning", role: "note" },
      h("strong", null, "There is no way to recover a lost password. "),
      "If you forget it, the stored keys are lost and you must create a new vault and add your keys again.",
    ),
    field("Password", password),
    meter.element,
    field("Confirm password", confirm),
    mismatch,
    message,
    h("div", { class: "actions" }, submit),
  );

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (submit.disabled) {
      return;
    }
    void create();
  });

  const create = async (): Promise<void> => {
    const chosen = password.value;
    password.value = "";
    confirm.value = "";
    meter.reset();
    clearMessage(message);
    submit.disabled = true;
    try {
      context.setStatus(await vaultCreate(chosen));
    } catch (error) {
      showMessage(message, toAppError(error).message, "error");
      password.focus();
    }
  };

  queueMicrotask(() => password.focus());
  return { element: h("main", { class: "screen center", testid: "screen-create" }, form) };
}

/** Unlock screen for later runs. */
export function unlockScreen(context: AppContext): Screen {
  const password = passwordInput("unlock-password", "current-password");
  const submit = h("button", { type: "submit", class: "primary", testid: "unlock-submit" }, "Unlock");
  const message = messageRegion("unlock-error");
  password.setAttribute("aria-errormessage", "unlock-error-text");
  message.id = "unlock-error-text";

  const form = h(
    "form",
    { class: "card narrow", testid: "unlock-form", "aria-labelledby": "unlock-title" },
    h("h1", { id: "unlock-title" }, "Unlock Keyport"),
    h("p", null, "The proxy starts once the vault is unlocked."),
    field("Password", password),
    message,
    h("div", { class: "actions" }, submit),
  );

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void unlock();
  });

  const unlock = async (): Promise<void> => {
    const entered = password.value;
    password.value = "";
    if (entered === "") {
      showMessage(message, "Enter your vault password.", "error");
      password.focus();
      return;
    }
    clearMessage(message);
    password.removeAttribute("aria-invalid");
    submit.disabled = true;
    try {
      context.setStatus(await vaultUnlock(entered));
    } catch (error) {
      const appError = toAppError(error);
      const text = appError.code === "wrong_password" ? "Wrong password. Try again." : appError.message;
      showMessage(message, text, "error");
      password.setAttribute("aria-invalid", "true");
      password.focus();
    } finally {
      submit.disabled = false;
    }
  };

  queueMicrotask(() => password.focus());
  return { element: h("main", { class: "screen center", testid: "screen-unlock" }, form) };
}
