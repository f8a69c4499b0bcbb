// The filter form of the Requests screen.

import { field, h, replaceChildren } from "../dom";
import { localInputToRfc3339 } from "../format";
import type { LogFilter } from "../generated/LogFilter";
import type { StatusClass } from "../generated/StatusClass";

const STATUS_CLASSES: ReadonlyArray<{ value: StatusClass; label: string }> = [
  { value: "2xx", label: "2xx success" },
  { value: "4xx", label: "4xx client error" },
  { value: "5xx", label: "5xx server error" },
  { value: "error", label: "failed, no reply" },
];

export interface FilterForm {
  element: HTMLFormElement;
  setProviders(ids: string[]): void;
}

/** Builds the filter form; `onApply` receives the filter on submit and on Clear. */
export function createFilterForm(onApply: (filter: LogFilter) => void): FilterForm {
  const anyOption = (): HTMLOptionElement => h("option", { value: "" }, "Any");
  const provider = h("select", { testid: "log-filter-provider" }, anyOption());
  const model = h("input", { type: "text", autocomplete: "off", spellcheck: "false", testid: "log-filter-model" });
  const status = h("select", { testid: "log-filter-status" }, anyOption(), STATUS_CLASSES.map((entry) => h("option", { value: entry.value }, entry.label)));
  const token = h("input", { type: "text", autocomplete: "off", spellcheck: "false", testid: "log-filter-token" });
  const path = h("input", { type: "text", autocomplete: "off", spellcheck: "false", testid: "log-filter-path" });
  const since = h("input", { type: "datetime-local", testid: "log-filter-since" });
  const until = h("input", { type: "datetime-local", testid: "log-filter-until" });

  const form = h(
    "form",
    { class: "card filters", testid: "log-filter-form", "aria-label": "Filter requests" },
    h(
      "div",
      { class: "row" },
      field("Provider", provider),
      field("Model", model, "Exact model name"),
      field("Status", status),
      field("Client token", token, "Token name"),
      field("Path contains", path),
      field("From", since),
      field("Before", until),
    ),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "reset", testid: "log-filter-clear" }, "Clear"),
      h("button", { type: "submit", class: "primary", testid: "log-filter-apply" }, "Apply"),
    ),
  );

  const text = (input: HTMLInputElement | HTMLSelectElement): string | null => {
    const value = input.value.trim();
    return value === "" ? null : value;
  };
  const read = (): LogFilter => ({
    since: localInputToRfc3339(since.value),
    until: localInputToRfc3339(until.value),
    provider: text(provider),
    model: text(model),
    status: text(status) as StatusClass | null,
    token: text(token),
    pathContains: text(path),
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    onApply(read());
  });
  // The reset event fires before the fields are cleared, so read them after.
  form.addEventListener("reset", () => queueMicrotask(() => onApply(read())));

  return {
    element: form,
    setProviders: (ids) => {
      const selected = provider.value;
      replaceChildren(provider, anyOption(), ids.map((id) => h("option", { value: id }, id)));
      provider.value = selected;
    },
  };
}
