// Hand-written stand-in for the file ts-rs generates from the Rust types. The
// desktop shell build replaces it.
export type LogRow = {
  id: number;
  startedAt: string;
  token: string | null;
  origin: string | null;
  provider: string;
  method: string;
  path: string;
  model: string | null;
  streamed: boolean;
  status: number | null;
  errorKind: string | null;
  outcome: string;
  latencyMs: number | null;
  ttfbMs: number | null;
  requestBytes: number;
  responseBytes: number;
  inputTokens: number | null;
  outputTokens: number | null;
  cachedTokens: number | null;
  costUsd: number | null;
  upstreamRequestId: string | null;
};
