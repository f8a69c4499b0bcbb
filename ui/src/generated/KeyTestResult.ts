// Hand-written stand-in for the file ts-rs generates from the Rust types. The
// desktop shell build replaces it.
export type KeyTestResult = {
  ok: boolean;
  status: number | null;
  latencyMs: number;
  message: string;
};
