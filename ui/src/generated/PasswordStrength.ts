// Hand-written stand-in for the file ts-rs generates from the Rust types; the
// desktop shell build replaces it.
export type PasswordStrength = {
  score: number;
  acceptable: boolean;
  warning: string | null;
  suggestions: Array<string>;
};
