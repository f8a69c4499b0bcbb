// The detail panel for the selected request-log row. Escape or Close hides
// it and returns focus to the row's button, or to `fallbackFocus` when that
// row has left the table.

import { h, replaceChildren } from "../dom";
import { NONE, formatBytes, formatCost, formatCount, formatDateTime, formatLatency } from "../format";
import type { LogRow } from "../generated/LogRow";

export interface DetailPanel {
  element: HTMLElement;
  show(row: LogRow, opener: HTMLElement): void;
  hide(): void;
  dispose(): void;
}

export function createDetailPanel(fallbackFocus: HTMLElement): DetailPanel {
  let opener: HTMLElement | null = null;
  const content = h("dl", { class: "detail-fields" });
  const close = h("button", { type: "button", testid: "log-detail-close" }, "Close");
  const heading = h("h2", { id: "log-detail-title", tabindex: "-1" }, "Request");
  const element = h(
    "aside",
    { class: "card detail", testid: "log-detail", "aria-labelledby": "log-detail-title", hidden: true },
    h("header", null, heading, close),
    content,
  );

  const hide = (): void => {
    if (element.hidden) {
      return;
    }
    element.hidden = true;
    opener?.closest("tr")?.classList.remove("selected");
    if (opener?.isConnected === true) {
      opener.focus();
    } else {
      fallbackFocus.focus();
    }
    opener = null;
  };

  const onKeydown = (event: KeyboardEvent): void => {
    if (event.key === "Escape" && !element.hidden) {
      event.preventDefault();
      hide();
    }
  };
  close.addEventListener("click", hide);
  document.addEventListener("keydown", onKeydown);

  return {
    element,
    show: (row, button) => {
      opener = button;
      heading.textContent = `Request ${row.id}`;
      replaceChildren(content, detailFields(row).map(([name, value]) => [h("dt", null, name), h("dd", null, value)]));
      element.hidden = false;
      heading.focus();
    },
    hide,
    dispose: () => document.removeEventListener("keydown", onKeydown),
  };
}

function optional(value: string | null): string {
  return value ?? NONE;
}

/** Returns every field of `row` as label and display text, in reading order. */
export function detailFields(row: LogRow): Array<[string, string]> {
  return [
    ["Started", formatDateTime(row.startedAt)],
    ["Client token", optional(row.token)],
    ["Key", row.keyLabel ?? "default"],
    ["Origin", optional(row.origin)],
    ["Provider", row.provider],
    ["Request", `${row.method} ${row.path}`],
    ["Model", optional(row.model)],
    ["Streamed", row.streamed ? "yes" : "no"],
    ["Status", row.status === null ? NONE : String(row.status)],
    ["Error", optional(row.errorKind)],
    ["Outcome", row.outcome],
    ["Latency", formatLatency(row.latencyMs)],
    ["Time to first byte", formatLatency(row.ttfbMs)],
    ["Request size", formatBytes(row.requestBytes)],
    ["Response size", formatBytes(row.responseBytes)],
    ["Input tokens", formatCount(row.inputTokens)],
    ["Output tokens", formatCount(row.outputTokens)],
    ["Cached tokens", formatCount(row.cachedTokens)],
    ["Estimated cost", formatCost(row.costUsd)],
    ["Upstream request id", optional(row.upstreamRequestId)],
  ];
}
