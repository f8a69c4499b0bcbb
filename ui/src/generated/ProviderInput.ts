// Hand-written stand-in for the file ts-rs generates from the Rust types. The
// desktop shell build replaces it.
import type { AuthStyle } from "./AuthStyle";

export type ProviderInput = {
  id: string;
  baseUrl: string;
  auth: AuthStyle;
  authName: string | null;
};
