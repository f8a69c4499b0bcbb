// Typed subscriptions to the events the desktop shell emits.

import { listen, type UnlistenFn } from "@tauri-apps/api/event";

import type { AppStatus } from "../generated/AppStatus";
import type { LogRow } from "../generated/LogRow";

export type { UnlistenFn };

/** Name of the event sent on lock, unlock, auto-lock and proxy start, stop or failure. */
export const STATUS_CHANGED = "status-changed";

/** Name of the event sent for each new request-log row. */
export const REQUEST_LOGGED = "request-logged";

/** Calls `handler` with the new status on each `status-changed` event. */
export function onStatusChanged(handler: (status: AppStatus) => void): Promise<UnlistenFn> {
  return listen<AppStatus>(STATUS_CHANGED, (event) => handler(event.payload));
}

/** Calls `handler` with each row the proxy adds to the request log. */
export function onRequestLogged(handler: (row: LogRow) => void): Promise<UnlistenFn> {
  return listen<LogRow>(REQUEST_LOGGED, (event) => handler(event.payload));
}
