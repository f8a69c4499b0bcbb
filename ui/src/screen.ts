import type { AppStatus } from "./generated/AppStatus";

/** Services the app shell passes to each screen. */
export interface AppContext {
  /** The latest status from a command reply or a `status-changed` event. */
  status(): AppStatus;
  /** Publishes a status returned by a command, as if the shell had sent it. */
  setStatus(status: AppStatus): void;
}

/** A mounted screen. `dispose` drops its event subscriptions and timers. */
export interface Screen {
  element: HTMLElement;
  /** Called after each status change while the screen is mounted. */
  onStatus?(status: AppStatus): void;
  dispose?(): void;
}
