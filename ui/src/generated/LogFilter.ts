// Hand-written stand-in for the file ts-rs generates from the Rust types. The
// desktop shell build replaces it.
import type { StatusClass } from "./StatusClass";

export type LogFilter = {
  since: string | null;
  until: string | null;
  provider: string | null;
  model: string | null;
  status: StatusClass | null;
  token: string | null;
  pathContains: string | null;
};
