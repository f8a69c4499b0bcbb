// Hand-written stand-in for the file ts-rs generates from the Rust types. The
// desktop shell build replaces it.
import type { AppError } from "./AppError";
import type { ProxyState } from "./ProxyState";

export type ProxyStatus = {
  state: ProxyState;
  address: string | null;
  port: number | null;
  error: AppError | null;
};
