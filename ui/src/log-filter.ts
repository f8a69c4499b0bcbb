// Client-side matching of live `request-logged` rows against the filter of
// the Requests screen. It mirrors the WHERE clause the core builds for
// `logs_query` (crates/keyport-core/src/requestlog/store/query.rs), so a live
// row appears exactly when a reload would show it.

import type { LogFilter } from "./generated/LogFilter";
import type { LogRow } from "./generated/LogRow";
import type { StatusClass } from "./generated/StatusClass";

export function emptyFilter(): LogFilter {
  return { since: null, until: null, provider: null, model: null, status: null, token: null, pathContains: null };
}

/**
 * Returns the status class the core stores for `row`: "error" when the
 * request failed before a reply or has no status, else the hundreds digit.
 * Classes outside the contract (1xx, 3xx, invalid) return null.
 */
export function statusClassOf(row: LogRow): StatusClass | null {
  if (row.errorKind !== null || row.status === null) {
    return "error";
  }
  if (row.status >= 200 && row.status < 300) {
    return "2xx";
  }
  if (row.status >= 400 && row.status < 500) {
    return "4xx";
  }
  if (row.status >= 500 && row.status < 600) {
    return "5xx";
  }
  return null;
}

/** True when `row` passes every set field of `filter`; `since` is inclusive and `until` exclusive. */
export function matchesFilter(row: LogRow, filter: LogFilter): boolean {
  const started = Date.parse(row.startedAt);
  if (filter.since !== null && !(started >= Date.parse(filter.since))) {
    return false;
  }
  if (filter.until !== null && !(started < Date.parse(filter.until))) {
    return false;
  }
  if (filter.provider !== null && row.provider !== filter.provider) {
    return false;
  }
  if (filter.model !== null && row.model !== filter.model) {
    return false;
  }
  if (filter.token !== null && row.token !== filter.token) {
    return false;
  }
  if (filter.status !== null && statusClassOf(row) !== filter.status) {
    return false;
  }
  if (filter.pathContains !== null && !asciiLower(row.path).includes(asciiLower(filter.pathContains))) {
    return false;
  }
  return true;
}

/** Lowercases only A-Z, as SQLite's LIKE does. */
function asciiLower(text: string): string {
  return text.replace(/[A-Z]/g, (letter) => letter.toLowerCase());
}
