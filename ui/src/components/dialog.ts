// A modal confirmation dialog. It is built from plain elements instead of
// `<dialog>.showModal()` so that it behaves the same in the webview and in
// jsdom, which does not implement `showModal`.

import { h } from "../dom";

export interface ConfirmOptions {
  title: string;
  message: string;
  confirmLabel: string;
  /** Styles the confirm button as destructive. */
  danger?: boolean;
}

/**
 * Shows a modal dialog and resolves to true when the user confirms. Escape,
 * Cancel and a click on the backdrop resolve to false. Focus starts on
 * Cancel, stays inside the dialog, and returns to the element that had it.
 */
export function confirmDialog(options: ConfirmOptions): Promise<boolean> {
  const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;

  return new Promise((resolve) => {
    const titleId = "confirm-dialog-title";
    const messageId = "confirm-dialog-message";
    const cancel = h("button", { type: "button", testid: "confirm-cancel" }, "Cancel");
    const confirm = h(
      "button",
      { type: "button", class: options.danger === true ? "danger" : "primary", testid: "confirm-accept" },
      options.confirmLabel,
    );
    const dialog = h(
      "div",
      {
        class: "dialog",
        role: "alertdialog",
        "aria-modal": "true",
        "aria-labelledby": titleId,
        "aria-describedby": messageId,
        testid: "confirm-dialog",
      },
      h("h2", { id: titleId }, options.title),
      h("p", { id: messageId }, options.message),
      h("div", { class: "actions" }, cancel, confirm),
    );
    const backdrop = h("div", { class: "backdrop" }, dialog);

    const close = (result: boolean): void => {
      document.removeEventListener("keydown", onKeydown, true);
      backdrop.remove();
      opener?.focus();
      resolve(result);
    };

    const onKeydown = (event: KeyboardEvent): void => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        close(false);
      } else if (event.key === "Tab") {
        // Two buttons only, so Tab and Shift+Tab both move to the other one.
        event.preventDefault();
        (document.activeElement === cancel ? confirm : cancel).focus();
      }
    };

    cancel.addEventListener("click", () => close(false));
    confirm.addEventListener("click", () => close(true));
    backdrop.addEventListener("click", (event) => {
      if (event.target === backdrop) {
        close(false);
      }
    });
    document.addEventListener("keydown", onKeydown, true);
    document.body.append(backdrop);
    cancel.focus();
  });
}
