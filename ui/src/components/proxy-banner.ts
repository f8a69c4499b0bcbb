// The banner shown when the proxy failed to start. For `port_in_use` it
// offers another port or any free port; for other failures, a retry.

import { proxyRestart } from "../api/commands";
import { toAppError } from "../api/errors";
import { field, h, messageRegion, replaceChildren, showMessage } from "../dom";
import type { AppStatus } from "../generated/AppStatus";

export interface ProxyBanner {
  element: HTMLElement;
  update(status: AppStatus): void;
}

/** Builds the banner; `onStatus` receives the status `proxy_restart` returns. */
export function createProxyBanner(onStatus: (status: AppStatus) => void): ProxyBanner {
  const element = h("section", { class: "banner", testid: "proxy-banner", role: "alert", hidden: true });

  const restart = async (port: number | null, message: HTMLElement, buttons: HTMLButtonElement[]): Promise<void> => {
    buttons.forEach((button) => (button.disabled = true));
    try {
      onStatus(await proxyRestart(port));
    } catch (error) {
      showMessage(message, toAppError(error).message, "error");
    } finally {
      buttons.forEach((button) => (button.disabled = false));
    }
  };

  const portInUse = (status: AppStatus): HTMLElement[] => {
    const port = h("input", { type: "number", min: 1, max: 65535, step: 1, required: true, testid: "port-input" });
    const use = h("button", { type: "submit", class: "primary", testid: "port-use" }, "Use port");
    const pick = h("button", { type: "button", testid: "port-pick-free" }, "Pick a free port");
    const message = messageRegion("port-message");
    const form = h("form", { class: "inline-form", testid: "port-form", "aria-label": "Start the proxy on another port" }, field("Use port", port), use, pick);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const chosen = port.valueAsNumber;
      if (!Number.isInteger(chosen) || chosen < 1 || chosen > 65535) {
        showMessage(message, "Enter a port from 1 to 65535.", "error");
        port.focus();
        return;
      }
      void restart(chosen, message, [use, pick]);
    });
    pick.addEventListener("click", () => void restart(0, message, [use, pick]));
    const portText = status.proxy.port === null ? "The configured port" : `Port ${status.proxy.port}`;
    return [
      h("p", null, h("strong", null, `${portText} is in use by another program, so the proxy is not running. `), "Choose another port or let Keyport pick a free one. Update the base URL in your apps to match."),
      form,
      message,
    ];
  };

  const otherFailure = (status: AppStatus): HTMLElement[] => {
    const retry = h("button", { type: "button", testid: "proxy-retry" }, "Retry");
    const message = messageRegion("port-message");
    retry.addEventListener("click", () => void restart(null, message, [retry]));
    return [h("p", null, h("strong", null, "The proxy is not running. "), status.proxy.error?.message ?? "It failed to start."), retry, message];
  };

  return {
    element,
    update: (status) => {
      const failed = status.vault === "unlocked" && status.proxy.state === "failed";
      const portTaken = failed && status.proxy.error?.code === "port_in_use";
      let kind = "";
      if (portTaken) {
        kind = "port_in_use";
      } else if (failed) {
        kind = `other: ${status.proxy.error?.message ?? ""}`;
      }

      // Rebuild only when the failure kind changes, so a status event does
      // not wipe a port the user is typing.
      if (element.dataset["kind"] === kind) {
        return;
      }
      element.dataset["kind"] = kind;
      element.hidden = !failed;
      if (portTaken) {
        replaceChildren(element, portInUse(status));
      } else if (failed) {
        replaceChildren(element, otherFailure(status));
      } else {
        replaceChildren(element);
      }
    },
  };
}
