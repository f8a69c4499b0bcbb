// The Requests screen: the request log newest first, with filters, paging
// by cursor, a detail panel, totals, export and live rows from the
// `request-logged` event.

import { logsExport, logsQuery, logsTotals, providersList } from "../api/commands";
import { toAppError } from "../api/errors";
import { onRequestLogged } from "../api/events";
import { clearMessage, h, messageRegion, replaceChildren, showMessage } from "../dom";
import { formatCost, formatCount, formatLatency, formatTime, formatTokens } from "../format";
import type { ExportFormat } from "../generated/ExportFormat";
import type { LogFilter } from "../generated/LogFilter";
import type { LogRow } from "../generated/LogRow";
import type { Totals } from "../generated/Totals";
import { emptyFilter, matchesFilter } from "../log-filter";
import type { Screen } from "../screen";
import { createDetailPanel } from "./request-detail";
import { createFilterForm } from "./request-filter";

/** Rows per `logs_query` page. */
export const PAGE_SIZE = 100;

/** Log table columns, and whether each contains numbers, which align right. */
const COLUMNS: ReadonlyArray<[string, boolean]> = [
  ["Time", false],
  ["Token", false],
  ["Provider", false],
  ["Model", false],
  ["Status", true],
  ["Latency", true],
  ["Tokens in / out", true],
  ["Cost", true],
];

/**
 * Rows kept in the table as live rows arrive. Past it, each new live row
 * pushes the oldest one out, and "Load more" fetches it again on request.
 */
export const MAX_LIVE_TABLE_ROWS = 1000;

/** Delay before totals are fetched again after live rows arrive. */
export const TOTALS_REFRESH_MS = 2000;

export function requestsScreen(): Screen {
  let filter: LogFilter = emptyFilter();
  let cursor: string | null = null;
  let loading = false;
  let disposed = false;
  let unlisten: (() => void) | null = null;
  let totalsTimer: ReturnType<typeof setTimeout> | undefined;
  // Rows that arrive while the first page loads, merged in once it is there.
  let pendingLive: LogRow[] = [];
  const shownIds = new Set<number>();

  const body = h("tbody", { testid: "log-rows" });
  const empty = h("p", { class: "muted", testid: "log-empty", hidden: true }, "No requests match the filter.");
  const loadMore = h("button", { type: "button", testid: "logs-load-more", hidden: true }, "Load more");
  const message = messageRegion("logs-message");
  const today = h("div", { class: "totals", testid: "totals-today" });
  const month = h("div", { class: "totals", testid: "totals-month" });
  const exportMessage = messageRegion("logs-export-message");
  const title = h("h1", { id: "requests-title", tabindex: "-1" }, "Requests");
  const detail = createDetailPanel(title);

  const rowElement = (row: LogRow): HTMLTableRowElement => {
    const select = h("button", { type: "button", class: "link", testid: "log-row-select", "aria-label": `Show details of request ${row.id}` }, formatTime(row.startedAt));
    const tr = h(
      "tr",
      { testid: "log-row", "data-id": row.id, "data-cursor": row.cursor, class: statusClassName(row) },
      h("td", null, select),
      h("td", null, row.token ?? "—"),
      h("td", null, row.provider),
      h("td", null, row.model ?? "—"),
      h("td", { class: "num" }, row.status === null ? (row.errorKind ?? "error") : String(row.status)),
      h("td", { class: "num" }, formatLatency(row.latencyMs)),
      h("td", { class: "num" }, formatTokens(row.inputTokens, row.outputTokens)),
      h("td", { class: "num" }, formatCost(row.costUsd)),
    );
    const open = (): void => {
      body.querySelector("tr.selected")?.classList.remove("selected");
      tr.classList.add("selected");
      detail.show(row, select);
    };
    select.addEventListener("click", open);
    return tr;
  };

  const appendRows = (rows: LogRow[]): void => {
    for (const row of rows) {
      if (!shownIds.has(row.id)) {
        shownIds.add(row.id);
        body.append(rowElement(row));
      }
    }
    empty.hidden = shownIds.size > 0;
  };

  const prependRow = (row: LogRow): void => {
    if (shownIds.has(row.id)) {
      return;
    }
    shownIds.add(row.id);
    body.prepend(rowElement(row));
    empty.hidden = true;
    if (shownIds.size > MAX_LIVE_TABLE_ROWS) {
      dropOldestRow();
    }
  };

  const dropOldestRow = (): void => {
    const oldest = body.lastElementChild;
    if (!(oldest instanceof HTMLElement) || oldest === body.firstElementChild) {
      return;
    }
    oldest.remove();
    shownIds.delete(Number(oldest.dataset.id));
    // Live rows arrive in the order requests end, not in the log's order of
    // start time, so the row above the dropped one can be older than it.
    // The next page therefore starts at the dropped row itself, unless the
    // pages not yet loaded start above it.
    const from = cursorFrom(oldest.dataset.cursor);
    if (from !== null && (cursor === null || compareCursors(from, cursor) > 0)) {
      cursor = from;
    }
    loadMore.hidden = cursor === null;
  };

  const loadPage = async (first: boolean): Promise<void> => {
    if (loading) {
      return;
    }
    loading = true;
    loadMore.disabled = true;
    body.parentElement?.setAttribute("aria-busy", "true");
    try {
      const page = await logsQuery(filter, first ? null : cursor, PAGE_SIZE);
      if (first) {
        body.replaceChildren();
        shownIds.clear();
        detail.hide();
      }
      appendRows(page.rows);
      cursor = page.nextCursor;
      loadMore.hidden = cursor === null;
      // Live rows are newer than the page, so they go on top, oldest first.
      // They are added after the cursor is set, so that rows they push out
      // stay reachable through Load more.
      for (const row of pendingLive.filter((live) => matchesFilter(live, filter)).reverse()) {
        prependRow(row);
      }
      clearMessage(message);
    } catch (error) {
      showMessage(message, toAppError(error).message, "error");
    } finally {
      pendingLive = [];
      loading = false;
      loadMore.disabled = false;
      body.parentElement?.setAttribute("aria-busy", "false");
    }
  };

  const loadTotals = async (): Promise<void> => {
    try {
      const totals = await logsTotals();
      renderTotals(today, "Today", totals.today);
      renderTotals(month, "This month", totals.month);
    } catch (error) {
      showMessage(message, toAppError(error).message, "error");
    }
  };

  const onLive = (row: LogRow): void => {
    if (loading) {
      pendingLive.unshift(row);
    } else if (matchesFilter(row, filter)) {
      prependRow(row);
    }
    clearTimeout(totalsTimer);
    totalsTimer = setTimeout(() => void loadTotals(), TOTALS_REFRESH_MS);
  };

  const exportRows = async (format: ExportFormat): Promise<void> => {
    clearMessage(exportMessage);
    try {
      const result = await logsExport(format, filter);
      showMessage(exportMessage, `Exported ${result.rows} rows to ${result.path}`, "ok");
    } catch (error) {
      showMessage(exportMessage, toAppError(error).message, "error");
    }
  };

  const filterForm = createFilterForm((next) => {
    filter = next;
    void loadPage(true);
  });
  loadMore.addEventListener("click", () => void loadPage(false));

  void providersList()
    .then((providers) => filterForm.setProviders(providers.map((provider) => provider.id)))
    .catch((error: unknown) => showMessage(message, toAppError(error).message, "error"));
  void loadTotals();
  void loadPage(true);
  void onRequestLogged(onLive).then((stop) => {
    if (disposed) {
      stop();
    } else {
      unlisten = stop;
    }
  });

  const element = h(
    "main",
    { class: "screen", testid: "screen-requests", "aria-labelledby": "requests-title" },
    title,
    h("section", { class: "totals-row", testid: "logs-totals", "aria-label": "Totals" }, today, month),
    filterForm.element,
    h(
      "div",
      { class: "actions" },
      h("button", { type: "button", testid: "logs-export-csv", on: { click: () => void exportRows("csv") } }, "Export CSV"),
      h("button", { type: "button", testid: "logs-export-jsonl", on: { click: () => void exportRows("jsonl") } }, "Export JSON Lines"),
    ),
    exportMessage,
    message,
    h(
      "div",
      { class: "log-layout" },
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "log", testid: "log-table" },
          h("caption", { class: "visually-hidden" }, "Requests, newest first"),
          h("thead", null, h("tr", null, COLUMNS.map(([title, numeric]) => h("th", { scope: "col", class: numeric ? "num" : null }, title)))),
          body,
        ),
        empty,
        loadMore,
      ),
      detail.element,
    ),
  );

  return {
    element,
    dispose: () => {
      disposed = true;
      clearTimeout(totalsTimer);
      unlisten?.();
      detail.dispose();
    },
  };
}

/**
 * Returns the cursor of the page that starts with the row whose own cursor
 * is `rowCursor`. A row's cursor, `START_MS.ID`, starts the page after the
 * row, because a page contains the rows below it by start time, then id.
 * The next id therefore starts the page at the row itself.
 */
export function cursorFrom(rowCursor: string | undefined): string | null {
  const key = cursorKey(rowCursor);
  return key === null ? null : `${key[0]}.${key[1] + 1}`;
}

/** Compares two cursors by where their pages start: above 0 when `a` starts at a later row. */
export function compareCursors(a: string, b: string): number {
  const left = cursorKey(a);
  const right = cursorKey(b);
  if (left === null || right === null) {
    return 0;
  }
  return left[0] - right[0] || left[1] - right[1];
}

function cursorKey(cursor: string | undefined): [number, number] | null {
  const match = /^(-?\d+)\.(-?\d+)$/.exec(cursor ?? "");
  if (match === null) {
    return null;
  }
  return [Number(match[1]), Number(match[2])];
}

function statusClassName(row: LogRow): string {
  if (row.status === null || row.errorKind !== null || row.status >= 500) {
    return "status-error";
  }
  return row.status >= 400 ? "status-warn" : "status-ok";
}

function renderTotals(container: HTMLElement, title: string, totals: Totals): void {
  replaceChildren(
    container,
    h("h2", null, title),
    h(
      "dl",
      null,
      h("dt", null, "Requests"),
      h("dd", { "data-field": "requests" }, formatCount(totals.requests)),
      h("dt", null, "Tokens in / out"),
      h("dd", { "data-field": "tokens" }, formatTokens(totals.inputTokens, totals.outputTokens)),
      h("dt", null, "Estimated cost"),
      h("dd", { "data-field": "cost" }, formatCost(totals.costUsd)),
    ),
  );
}
