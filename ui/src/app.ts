// The app shell: picks the screen from the vault state, and while unlocked
// shows the status bar, the proxy banner, navigation and the current screen.

import { startActivityReporter, type ActivityReporter } from "./activity";
import { appStatus, vaultLock } from "./api/commands";
import { toAppError } from "./api/errors";
import { onStatusChanged } from "./api/events";
import { createProxyBanner } from "./components/proxy-banner";
import { h, replaceChildren } from "./dom";
import type { AppStatus } from "./generated/AppStatus";
import type { VaultState } from "./generated/VaultState";
import type { AppContext, Screen } from "./screen";
import { connectScreen } from "./screens/connect";
import { keysScreen } from "./screens/keys";
import { requestsScreen } from "./screens/requests";
import { settingsScreen } from "./screens/settings";
import { createVaultScreen, unlockScreen } from "./screens/vault";

export type ScreenName = "keys" | "connect" | "requests" | "settings";

const SCREENS: ReadonlyArray<{ name: ScreenName; title: string; build: (context: AppContext) => Screen }> = [
  { name: "keys", title: "Keys", build: () => keysScreen() },
  { name: "connect", title: "Connect", build: (context) => connectScreen(context) },
  { name: "requests", title: "Requests", build: () => requestsScreen() },
  { name: "settings", title: "Settings", build: () => settingsScreen() },
];

/** Describes the vault and proxy state for the status bar. */
export function statusText(status: AppStatus): string {
  if (status.vault === "missing") {
    return "No vault yet";
  }
  if (status.vault === "locked") {
    return "Locked";
  }
  switch (status.proxy.state) {
    case "serving":
      return `Serving on ${status.proxy.address ?? `127.0.0.1:${status.proxy.port ?? "?"}`}`;
    case "stopped":
      return "Unlocked, proxy stopped";
    case "failed":
      return "Unlocked, proxy failed to start";
  }
}

export interface App {
  /** Shows another screen while the vault is unlocked. */
  navigate(name: ScreenName): void;
  /** Drops event subscriptions and listeners, for tests. */
  destroy(): void;
}

/** Fetches the status, mounts the matching screen in `root` and follows `status-changed`. */
export async function startApp(root: HTMLElement): Promise<App> {
  let status: AppStatus = await appStatus().catch((error: unknown) => {
    replaceChildren(root, h("main", { class: "screen center", testid: "screen-error", role: "alert" }, h("h1", null, "Keyport could not start"), h("p", null, toAppError(error).message)));
    throw error;
  });
  let shownVault: VaultState | null = null;
  let current: Screen | null = null;
  let currentName: ScreenName = "keys";
  let activityReporter: ActivityReporter | null = null;

  const context: AppContext = {
    status: () => status,
    setStatus: (next) => applyStatus(next),
  };

  const statusLine = h("span", { class: "status", testid: "status-text", role: "status", "aria-live": "polite" });
  const lock = h("button", { type: "button", testid: "lock-button" }, "Lock");
  const lockMessage = h("span", { class: "field-error", "aria-live": "assertive" });
  const navButtons = new Map<ScreenName, HTMLButtonElement>();
  const nav = h(
    "nav",
    { "aria-label": "Screens" },
    h("ul", null, SCREENS.map((screen) => {
      const button = h("button", { type: "button", class: "nav-link", testid: `nav-${screen.name}`, on: { click: () => navigate(screen.name) } }, screen.title);
      navButtons.set(screen.name, button);
      return h("li", null, button);
    })),
  );
  const banner = createProxyBanner((next) => applyStatus(next));
  const outlet = h("div", { class: "outlet" });
  const header = h("header", { class: "app-header", testid: "app-header" }, h("span", { class: "brand" }, "Keyport"), statusLine, lockMessage, lock);
  const shell = h("div", { class: "shell" }, header, nav, banner.element, outlet);

  lock.addEventListener("click", () => {
    lock.disabled = true;
    vaultLock()
      .then((next) => applyStatus(next))
      .catch((error: unknown) => (lockMessage.textContent = toAppError(error).message))
      .finally(() => (lock.disabled = false));
  });

  const mount = (screen: Screen, container: Element): void => {
    current?.dispose?.();
    current = screen;
    replaceChildren(container, screen.element);
  };

  const navigate = (name: ScreenName): void => {
    if (status.vault !== "unlocked") {
      return;
    }
    currentName = name;
    for (const [screenName, button] of navButtons) {
      if (screenName === name) {
        button.setAttribute("aria-current", "page");
      } else {
        button.removeAttribute("aria-current");
      }
    }
    const entry = SCREENS.find((screen) => screen.name === name) ?? SCREENS[0];
    if (entry !== undefined) {
      mount(entry.build(context), outlet);
    }
  };

  const applyStatus = (next: AppStatus): void => {
    status = next;
    statusLine.textContent = statusText(next);
    banner.update(next);
    if (next.vault !== shownVault) {
      shownVault = next.vault;
      showVaultState(next.vault);
    } else {
      current?.onStatus?.(next);
    }
  };

  const showVaultState = (vault: VaultState): void => {
    if (vault === "unlocked") {
      replaceChildren(root, shell);
      activityReporter ??= startActivityReporter();
      navigate(currentName);
      return;
    }
    activityReporter?.stop();
    activityReporter = null;
    mount(vault === "missing" ? createVaultScreen(context) : unlockScreen(context), root);
  };

  const unlisten = await onStatusChanged(applyStatus);
  applyStatus(status);

  return {
    navigate,
    destroy: () => {
      unlisten();
      activityReporter?.stop();
      current?.dispose?.();
      root.replaceChildren();
    },
  };
}
