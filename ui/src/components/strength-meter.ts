// A password strength meter fed by the shell's `password_strength` command,
// which scores with the same rules the vault enforces.

import { passwordStrength } from "../api/commands";
import { h, replaceChildren, uniqueId } from "../dom";
import type { PasswordStrength } from "../generated/PasswordStrength";

/** Delay after the last keystroke before the password is scored. */
export const STRENGTH_DEBOUNCE_MS = 250;

const SCORE_LABELS = ["Very weak", "Weak", "Fair", "Good", "Strong"] as const;

export interface StrengthMeter {
  element: HTMLElement;
  /** The score of the password now in the input, or null while it is pending or empty. */
  current(): PasswordStrength | null;
  /** Forgets the score, for when the form clears the input. */
  reset(): void;
}

/**
 * Scores `input` a short time after each change and shows the result.
 * `onChange` runs whenever the score of the current password changes,
 * including to null while a new score is pending. Replies for a password
 * that has since changed are dropped.
 */
export function createStrengthMeter(input: HTMLInputElement, onChange: () => void): StrengthMeter {
  const meter = h("meter", { min: 0, max: 4, low: 2, high: 3, optimum: 4, value: 0, "aria-hidden": "true" });
  const text = h("p", { class: "strength-text", testid: "strength-text", "aria-live": "polite" });
  const details = h("ul", { class: "strength-details" });
  const element = h("div", { class: "strength", testid: "strength-meter" }, meter, text, details);
  const describedBy = uniqueId("strength");
  text.id = describedBy;
  input.setAttribute("aria-describedby", [input.getAttribute("aria-describedby"), describedBy].filter(Boolean).join(" "));

  let result: PasswordStrength | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let sequence = 0;

  const show = (strength: PasswordStrength | null, message: string): void => {
    result = strength;
    meter.value = strength?.score ?? 0;
    element.dataset["score"] = strength === null ? "" : String(strength.score);
    text.textContent = message;
    const lines = strength === null ? [] : [strength.warning, ...strength.suggestions].filter((line) => line !== null);
    replaceChildren(details, lines.map((line) => h("li", null, line)));
    onChange();
  };

  const score = async (password: string, ticket: number): Promise<void> => {
    try {
      const strength = await passwordStrength(password);
      if (ticket !== sequence) {
        return;
      }
      const label = SCORE_LABELS[strength.score] ?? `Score ${strength.score}`;
      const verdict = strength.acceptable ? "acceptable" : "too weak to use";
      show(strength, `Strength: ${label}, ${verdict}.`);
    } catch (error) {
      if (ticket === sequence) {
        show(null, `Could not score the password: ${(error as Error).message}`);
      }
    }
  };

  input.addEventListener("input", () => {
    sequence += 1;
    clearTimeout(timer);
    const password = input.value;
    if (password === "") {
      show(null, "");
      return;
    }
    show(null, "Checking strength…");
    const ticket = sequence;
    timer = setTimeout(() => void score(password, ticket), STRENGTH_DEBOUNCE_MS);
  });

  return {
    element,
    current: () => result,
    reset: () => {
      sequence += 1;
      clearTimeout(timer);
      show(null, "");
    },
  };
}
