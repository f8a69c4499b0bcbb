// Display formatting for timestamps, money, latency and token counts.

/** Placeholder for a value the log does not have. */
export const NONE = "—";

/** Formats an RFC 3339 timestamp as local date and time, or returns it unchanged when unparseable. */
export function formatDateTime(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** Formats an RFC 3339 timestamp as a local date. */
export function formatDate(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleDateString();
}

/** Formats a local time of day with seconds, for the request log. */
export function formatTime(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleTimeString();
}

/**
 * Formats an estimated cost in US dollars. Small amounts keep four decimals
 * because single requests often cost fractions of a cent.
 */
export function formatCost(usd: number | null): string {
  if (usd === null) {
    return NONE;
  }
  const digits = usd !== 0 && Math.abs(usd) < 1 ? 4 : 2;
  return `$${usd.toFixed(digits)}`;
}

export function formatLatency(ms: number | null): string {
  return ms === null ? NONE : `${Math.round(ms)} ms`;
}

export function formatCount(value: number | null): string {
  return value === null ? NONE : value.toLocaleString();
}

/** Formats input and output tokens as "in / out". */
export function formatTokens(input: number | null, output: number | null): string {
  if (input === null && output === null) {
    return NONE;
  }
  return `${formatCount(input)} / ${formatCount(output)}`;
}

/** Formats a byte count with a binary unit. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) {
    return `${bytes} B`;
  }
  if (bytes < 1024 * 1024) {
    return `${(bytes / 1024).toFixed(1)} KiB`;
  }
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/** Converts a `datetime-local` input value (local time) to RFC 3339 in UTC, or null when empty or invalid. */
export function localInputToRfc3339(value: string): string | null {
  if (value === "") {
    return null;
  }
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}
