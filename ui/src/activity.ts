// Reports user input to the shell so the auto-lock idle timer restarts, at
// most once per interval.

import { activity } from "./api/commands";

/** Minimum time between two `activity` calls. */
export const ACTIVITY_INTERVAL_MS = 30_000;

const INPUT_EVENTS = ["keydown", "pointerdown", "wheel"] as const;

export interface ActivityReporter {
  /** Records one user input; sends `activity` unless one was sent within the interval. */
  notify(): void;
  /** Removes the document listeners. */
  stop(): void;
}

/**
 * Listens for keyboard, pointer and wheel input on `target` and calls
 * `send` for the first input and then at most once per `intervalMs`.
 * Failures are ignored: a locked vault rejects the call, and the next
 * status event moves the app to the unlock screen anyway.
 */
export function startActivityReporter(
  target: EventTarget = document,
  send: () => Promise<void> = activity,
  intervalMs: number = ACTIVITY_INTERVAL_MS,
  now: () => number = Date.now,
): ActivityReporter {
  let lastSent = Number.NEGATIVE_INFINITY;

  const notify = (): void => {
    const time = now();
    if (time - lastSent < intervalMs) {
      return;
    }
    lastSent = time;
    send().catch(() => undefined);
  };

  for (const type of INPUT_EVENTS) {
    target.addEventListener(type, notify, { capture: true, passive: true });
  }
  return {
    notify,
    stop: () => {
      for (const type of INPUT_EVENTS) {
        target.removeEventListener(type, notify, { capture: true });
      }
    },
  };
}
