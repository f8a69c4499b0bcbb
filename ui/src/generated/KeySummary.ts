// Hand-written stand-in for the file ts-rs generates from the Rust types. The
// desktop shell build replaces it.
export type KeySummary = {
  provider: string;
  label: string;
  masked: string;
  createdAt: string;
  updatedAt: string;
};
