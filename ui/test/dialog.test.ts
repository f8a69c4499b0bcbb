import { describe, expect, it } from "vitest";

import { confirmDialog } from "../src/components/dialog";
import { allByTestId, byTestId, mount } from "./helpers";

function press(key: string, shiftKey = false): void {
  document.activeElement?.dispatchEvent(new KeyboardEvent("keydown", { key, shiftKey, bubbles: true, cancelable: true }));
}

describe("confirm dialog", () => {
  it("starts on Cancel and keeps Tab inside", () => {
    void confirmDialog({ title: "Remove?", message: "Really?", confirmLabel: "Remove" });
    expect(document.activeElement).toBe(byTestId("confirm-cancel"));
    press("Tab");
    expect(document.activeElement).toBe(byTestId("confirm-accept"));
    press("Tab", true);
    expect(document.activeElement).toBe(byTestId("confirm-cancel"));
    press("Escape");
  });

  it("resolves false on Escape and restores focus", async () => {
    const opener = mount(document.createElement("button"));
    opener.focus();
    const result = confirmDialog({ title: "Remove?", message: "Really?", confirmLabel: "Remove" });
    press("Escape");
    await expect(result).resolves.toBe(false);
    expect(allByTestId("confirm-dialog")).toHaveLength(0);
    expect(document.activeElement).toBe(opener);
  });

  it("resolves true on confirm", async () => {
    const result = confirmDialog({ title: "Remove?", message: "Really?", confirmLabel: "Remove", danger: true });
    const accept = byTestId<HTMLButtonElement>("confirm-accept");
    expect(accept.classList.contains("danger")).toBe(true);
    expect(accept.textContent).toBe("Remove");
    accept.click();
    await expect(result).resolves.toBe(true);
  });

  it("labels itself for screen readers", () => {
    void confirmDialog({ title: "Revoke the token?", message: "Apps using it stop working.", confirmLabel: "Revoke" });
    const dialog = byTestId("confirm-dialog");
    expect(dialog.getAttribute("aria-modal")).toBe("true");
    expect(document.getElementById(dialog.getAttribute("aria-labelledby") ?? "")?.textContent).toBe("Revoke the token?");
    expect(document.getElementById(dialog.getAttribute("aria-describedby") ?? "")?.textContent).toBe("Apps using it stop working.");
    press("Escape");
  });
});
