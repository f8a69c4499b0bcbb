// Hand-written stand-in for the file ts-rs generates from the Rust types. The
// desktop shell build replaces it.
export type PasswordStrength = {
  score: number;
  acceptable: boolean;
  warning: string | null;
  suggestions: Array<string>;
};
