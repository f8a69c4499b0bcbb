import { h } from "../dom";

/**
 * Builds a Copy button that writes `text()` to the clipboard and reports the
 * result in `status`. When the clipboard API is missing or rejects, the
 * status tells the user to copy by hand.
 */
export function copyButton(testid: string, text: () => string, status: HTMLElement): HTMLButtonElement {
  const button = h("button", { type: "button", testid }, "Copy");
  button.addEventListener("click", () => {
    void copy(text(), status);
  });
  return button;
}

async function copy(text: string, status: HTMLElement): Promise<void> {
  try {
    if (navigator.clipboard === undefined) {
      throw new Error("clipboard API missing");
    }
    await navigator.clipboard.writeText(text);
    status.textContent = "Copied.";
  } catch {
    status.textContent = "Could not copy. Select the text and copy it with the keyboard.";
  }
}
