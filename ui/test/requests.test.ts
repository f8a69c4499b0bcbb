import { emit } from "@tauri-apps/api/event";
import { describe, expect, it } from "vitest";

import type { LogFilter } from "../src/generated/LogFilter";
import type { LogRow } from "../src/generated/LogRow";
import { emptyFilter, matchesFilter, statusClassOf } from "../src/log-filter";
import { MAX_LIVE_TABLE_ROWS, PAGE_SIZE, cursorFrom, requestsScreen } from "../src/screens/requests";
import { detailFields } from "../src/screens/request-detail";
import { allByTestId, byTestId, callsOf, emitEvent, logRow, mockCommands, mount, provider, settle, submit, type } from "./helpers";

const TOTALS = {
  today: { requests: 3, inputTokens: 1200, outputTokens: 340, costUsd: 0.0042 },
  month: { requests: 52, inputTokens: 20000, outputTokens: 9000, costUsd: 1.25 },
};

function shownIds(): string[] {
  return allByTestId("log-row").map((row) => row.dataset["id"] ?? "");
}

async function mountRequests(pages: Record<string, { rows: LogRow[]; nextCursor: string | null }> = { first: { rows: [logRow(3), logRow(2)], nextCursor: "c2" }, c2: { rows: [logRow(1)], nextCursor: null } }) {
  const calls = mockCommands({
    providers_list: () => [provider("openai"), provider("anthropic")],
    logs_totals: () => TOTALS,
    logs_query: (args) => pages[(args["cursor"] as string | null) ?? "first"] ?? { rows: [], nextCursor: null },
    logs_export: (args) => ({ path: `/home/user/Downloads/keyport-requests.${String(args["format"])}`, rows: 3 }),
  });
  const screen = requestsScreen();
  mount(screen.element);
  await settle();
  return { calls, screen };
}

/**
 * Mounts the screen over a log that serves `logs_query` like the store:
 * newest first by start time and id, from the cursor on. `logged` rows are
 * in the log but not on the first page, as live rows are.
 */
async function mountLog(firstPage: LogRow[], logged: LogRow[]) {
  const all = [...firstPage, ...logged];
  const key = (row: LogRow): [number, number] => [Date.parse(row.startedAt), row.id];
  const before = (a: [number, number], b: [number, number]): boolean => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
  const calls = mockCommands({
    providers_list: () => [],
    logs_totals: () => TOTALS,
    logs_query: (args) => {
      const cursor = args["cursor"] as string | null;
      if (cursor === null) {
        return { rows: firstPage, nextCursor: null };
      }
      const [start, id] = cursor.split(".").map(Number) as [number, number];
      const rows = all
        .filter((row) => before(key(row), [start, id]))
        .sort((a, b) => (before(key(a), key(b)) ? 1 : -1))
        .slice(0, PAGE_SIZE);
      return { rows, nextCursor: rows.length === PAGE_SIZE ? (rows.at(-1)?.cursor ?? null) : null };
    },
  });
  mount(requestsScreen().element);
  await settle();
  return { calls };
}

/** Clicks Load more until it hides, at most 50 times. */
async function loadAll(calls: Array<{ command: string }>): Promise<void> {
  const more = byTestId<HTMLButtonElement>("logs-load-more");
  for (let click = 0; click < 50 && !more.hidden; click += 1) {
    more.click();
    await settle();
  }
  expect(more.hidden).toBe(true);
  expect(calls.length).toBeGreaterThan(0);
}

describe("requests screen", () => {
  it("loads the first page newest first with totals", async () => {
    const { calls } = await mountRequests();
    expect(callsOf(calls, "logs_query")).toEqual([{ filter: emptyFilter(), cursor: null, limit: PAGE_SIZE }]);
    expect(shownIds()).toEqual(["3", "2"]);
    const cells = [...(allByTestId("log-row")[0]?.querySelectorAll("td") ?? [])].map((cell) => cell.textContent);
    expect(cells.slice(1)).toEqual(["my-app", "openai", "gpt-4o-mini", "200", "420 ms", "12 / 34", "$0.0001"]);
    expect(byTestId("totals-today").textContent).toContain("3");
    expect(byTestId("totals-today").querySelector('[data-field="cost"]')?.textContent).toBe("$0.0042");
    expect(byTestId("totals-month").querySelector('[data-field="cost"]')?.textContent).toBe("$1.25");
  });

  it("loads more rows by cursor", async () => {
    const { calls } = await mountRequests();
    const more = byTestId<HTMLButtonElement>("logs-load-more");
    expect(more.hidden).toBe(false);
    more.click();
    await settle();
    expect(callsOf(calls, "logs_query")[1]).toEqual({ filter: emptyFilter(), cursor: "c2", limit: PAGE_SIZE });
    expect(shownIds()).toEqual(["3", "2", "1"]);
    expect(more.hidden).toBe(true);
  });

  it("sends the filter and reloads from the first page", async () => {
    const { calls } = await mountRequests();
    type(byTestId("log-filter-provider"), "anthropic");
    type(byTestId("log-filter-model"), " claude-3-5-haiku ");
    type(byTestId("log-filter-status"), "4xx");
    type(byTestId("log-filter-token"), "my-app");
    type(byTestId("log-filter-path"), "messages");
    type(byTestId("log-filter-since"), "2025-01-15T10:00");
    submit(byTestId("log-filter-form"));
    await settle();

    const sent = callsOf(calls, "logs_query").at(-1);
    expect(sent).toEqual({
      filter: {
        since: new Date("2025-01-15T10:00").toISOString(),
        until: null,
        provider: "anthropic",
        model: "claude-3-5-haiku",
        status: "4xx",
        token: "my-app",
        pathContains: "messages",
      },
      cursor: null,
      limit: PAGE_SIZE,
    });
  });

  it("prepends live rows that match the filter", async () => {
    const { calls } = await mountRequests();
    type(byTestId("log-filter-provider"), "openai");
    submit(byTestId("log-filter-form"));
    await settle();
    expect(shownIds()).toEqual(["3", "2"]);

    await emitEvent("request-logged", logRow(10, { provider: "anthropic" }));
    await emitEvent("request-logged", logRow(11));
    await emitEvent("request-logged", logRow(11));

    expect(shownIds()).toEqual(["11", "3", "2"]);
    expect(callsOf(calls, "logs_query")).toHaveLength(2);
  });

  it("caps the table as live rows arrive", async () => {
    const { calls } = await mountRequests({ first: { rows: [logRow(3), logRow(2)], nextCursor: null } });
    const more = byTestId<HTMLButtonElement>("logs-load-more");
    expect(more.hidden).toBe(true);

    const live = Array.from({ length: MAX_LIVE_TABLE_ROWS }, (_, index) => emit("request-logged", logRow(100 + index)));
    await Promise.all(live);
    await settle();

    const ids = shownIds();
    expect(ids).toHaveLength(MAX_LIVE_TABLE_ROWS);
    expect(ids[0]).toBe(String(99 + MAX_LIVE_TABLE_ROWS));
    expect(ids.at(-1)).toBe("100");
    expect(more.hidden).toBe(false);

    more.click();
    await settle();
    // The page starts at the newest row pushed out.
    expect(callsOf(calls, "logs_query")[1]).toEqual({ filter: emptyFilter(), cursor: cursorFrom(logRow(3).cursor), limit: PAGE_SIZE });
  });

  it("reloads trimmed rows ended out of order", async () => {
    // Live rows arrive when requests end, so a long stream that started
    // before a short request arrives after it.
    const stream = logRow(20);
    const short = logRow(30);
    const later = Array.from({ length: MAX_LIVE_TABLE_ROWS - 1 }, (_, index) => logRow(100 + index));
    const logged = [short, stream, ...later];
    const { calls } = await mountLog([], logged);

    for (const row of logged) {
      await emit("request-logged", row);
    }
    await settle();
    expect(shownIds()).not.toContain("30");
    await loadAll(calls);

    const ids = shownIds();
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(logged.map((row) => String(row.id)).sort());
  });

  it("keeps live rows during Load more", async () => {
    let release: () => void = () => {};
    const older = new Promise<void>((resolve) => {
      release = resolve;
    });
    mockCommands({
      providers_list: () => [],
      logs_totals: () => TOTALS,
      logs_query: async (args) => {
        if (args["cursor"] === null) {
          return { rows: [logRow(3), logRow(2)], nextCursor: "c2" };
        }
        await older;
        return { rows: [logRow(1)], nextCursor: null };
      },
    });
    mount(requestsScreen().element);
    await settle();

    byTestId("logs-load-more").click();
    await settle();
    await emitEvent("request-logged", logRow(4));
    release();
    await settle();
    expect(shownIds()).toEqual(["4", "3", "2", "1"]);
  });

  it("stops live updates after dispose", async () => {
    const { screen } = await mountRequests();
    screen.dispose?.();
    await emitEvent("request-logged", logRow(12));
    expect(shownIds()).toEqual(["3", "2"]);
  });

  it("names the key a request used in the detail fields", () => {
    const key = (row: LogRow): string | undefined => detailFields(row).find(([label]) => label === "Key")?.[1];
    expect(key(logRow(1))).toBe("default");
    expect(key(logRow(2, { keyLabel: "client-a" }))).toBe("client-a");
  });

  it("opens the detail panel for a row and closes it with Escape", async () => {
    await mountRequests();
    const select = allByTestId("log-row")[1]?.querySelector<HTMLButtonElement>('[data-testid="log-row-select"]');
    select?.click();
    const detail = byTestId("log-detail");
    expect(detail.hidden).toBe(false);
    expect(detail.textContent).toContain("Request 2");
    expect(detail.textContent).toContain("req_2");
    expect(detail.textContent).toContain("POST /v1/chat/completions");

    document.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
    expect(detail.hidden).toBe(true);
    expect(document.activeElement).toBe(select);
  });

  it("moves focus to the title when the selected row was pushed out", async () => {
    await mountRequests({ first: { rows: [logRow(3), logRow(2)], nextCursor: null } });
    const select = allByTestId("log-row")[1]?.querySelector<HTMLButtonElement>('[data-testid="log-row-select"]');
    select?.click();
    const live = Array.from({ length: MAX_LIVE_TABLE_ROWS }, (_, index) => emit("request-logged", logRow(100 + index)));
    await Promise.all(live);
    await settle();
    expect(select?.isConnected).toBe(false);

    document.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
    expect(byTestId("log-detail").hidden).toBe(true);
    expect(document.activeElement?.id).toBe("requests-title");
  });

  it("exports with the filter and shows the path", async () => {
    const { calls } = await mountRequests();
    byTestId("logs-export-csv").click();
    await settle();
    expect(callsOf(calls, "logs_export")).toEqual([{ format: "csv", filter: emptyFilter() }]);
    expect(byTestId("logs-export-message").textContent).toBe("Exported 3 rows to /home/user/Downloads/keyport-requests.csv");
  });

  it("shows the shell's error when the query fails", async () => {
    mockCommands({
      providers_list: () => [],
      logs_totals: () => TOTALS,
      logs_query: () => {
        throw { code: "io", message: "Could not read the request log." };
      },
    });
    mount(requestsScreen().element);
    await settle();
    expect(byTestId("logs-message").textContent).toBe("Could not read the request log.");
  });
});

describe("live filter matching", () => {
  const filter = (overrides: Partial<LogFilter>): LogFilter => ({ ...emptyFilter(), ...overrides });

  it("matches everything with an empty filter", () => {
    expect(matchesFilter(logRow(1), emptyFilter())).toBe(true);
  });

  it("compares provider, model and token exactly", () => {
    expect(matchesFilter(logRow(1), filter({ provider: "openai" }))).toBe(true);
    expect(matchesFilter(logRow(1), filter({ provider: "open" }))).toBe(false);
    expect(matchesFilter(logRow(1), filter({ model: "gpt-4o" }))).toBe(false);
    expect(matchesFilter(logRow(1, { model: null }), filter({ model: "gpt-4o-mini" }))).toBe(false);
    expect(matchesFilter(logRow(1, { token: null }), filter({ token: "my-app" }))).toBe(false);
  });

  it("matches path text ignoring ASCII case", () => {
    expect(matchesFilter(logRow(1), filter({ pathContains: "CHAT" }))).toBe(true);
    expect(matchesFilter(logRow(1), filter({ pathContains: "embeddings" }))).toBe(false);
  });

  it("treats since as inclusive and until as exclusive", () => {
    const row = logRow(1, { startedAt: "2025-01-15T12:00:00.000Z" });
    expect(matchesFilter(row, filter({ since: "2025-01-15T12:00:00.000Z" }))).toBe(true);
    expect(matchesFilter(row, filter({ until: "2025-01-15T12:00:00.000Z" }))).toBe(false);
    expect(matchesFilter(row, filter({ until: "2025-01-15T12:00:00.001Z" }))).toBe(true);
  });

  it("classifies statuses like the core", () => {
    expect(statusClassOf(logRow(1, { status: 204 }))).toBe("2xx");
    expect(statusClassOf(logRow(1, { status: 429 }))).toBe("4xx");
    expect(statusClassOf(logRow(1, { status: 503 }))).toBe("5xx");
    expect(statusClassOf(logRow(1, { status: null }))).toBe("error");
    expect(statusClassOf(logRow(1, { status: 200, errorKind: "stream_interrupted" }))).toBe("error");
    expect(statusClassOf(logRow(1, { status: 302 }))).toBeNull();
    expect(matchesFilter(logRow(1, { status: 302 }), filter({ status: "2xx" }))).toBe(false);
  });
});
