// A small element builder over the DOM API. It never assigns `innerHTML` or
// inline styles, so text from the shell cannot become markup and the strict
// CSP (`style-src 'self'`) holds.

export type Child = Node | string | number | null | undefined | false | readonly Child[];

type Listener<E extends Event> = (event: E) => void;

export interface Props {
  /** Space-separated class names. */
  class?: string | null | undefined;
  /** Value of the `data-testid` attribute that WebDriver tests select on. */
  testid?: string;
  /** Event listeners, keyed by event type. */
  on?: { [K in keyof HTMLElementEventMap]?: Listener<HTMLElementEventMap[K]> };
  /**
   * Any other attribute: `true` sets it empty, and `false`, null and
   * undefined leave it out.
   */
  [attribute: string]: unknown;
}

/** Builds an element with attributes, listeners and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props | null = null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (props !== null) {
    applyProps(element, props);
  }
  append(element, children);
  return element;
}

function applyProps(element: HTMLElement, props: Props): void {
  for (const [name, value] of Object.entries(props)) {
    if (name === "on") {
      for (const [type, listener] of Object.entries(value as Record<string, EventListener>)) {
        element.addEventListener(type, listener);
      }
    } else if (name === "testid") {
      element.dataset["testid"] = String(value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else if (value !== false && value !== null && value !== undefined) {
      element.setAttribute(name, String(value));
    }
  }
}

/** Appends children, flattening arrays and skipping empty values. */
export function append(parent: Node, children: readonly Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    if (Array.isArray(child)) {
      append(parent, child);
    } else if (child instanceof Node) {
      parent.appendChild(child);
    } else {
      parent.appendChild(document.createTextNode(String(child)));
    }
  }
}

/** Replaces all children of `parent`. */
export function replaceChildren(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, children);
}

let nextId = 0;

/** Returns a document-unique id with `prefix`, for label and aria links. */
export function uniqueId(prefix: string): string {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/**
 * Builds a labelled form field. The label is linked to the control with
 * `for`, and the optional hint with `aria-describedby`.
 */
export function field(
  label: string,
  control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement,
  hint?: string,
): HTMLDivElement {
  if (control.id === "") {
    control.id = uniqueId("field");
  }
  const hintElement = hint === undefined ? null : h("p", { class: "hint", id: `${control.id}-hint` }, hint);
  if (hintElement !== null) {
    control.setAttribute("aria-describedby", hintElement.id);
  }
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control, hintElement);
}

/**
 * Builds a hidden live region for a form's result or error. `showMessage`
 * gives errors `role="alert"`, so screen readers announce them at once.
 */
export function messageRegion(testid: string): HTMLParagraphElement {
  return h("p", { class: "message", testid, "aria-live": "polite", hidden: true });
}

/** Shows `text` in a region from `messageRegion`, styled as an error or not. */
export function showMessage(region: HTMLElement, text: string, kind: "error" | "ok" | "info"): void {
  region.textContent = text;
  region.hidden = false;
  region.classList.toggle("error", kind === "error");
  region.classList.toggle("ok", kind === "ok");
  if (kind === "error") {
    region.setAttribute("role", "alert");
  } else {
    region.removeAttribute("role");
  }
}

/** Hides and empties a region from `messageRegion`. */
export function clearMessage(region: HTMLElement): void {
  region.textContent = "";
  region.hidden = true;
  region.removeAttribute("role");
}
