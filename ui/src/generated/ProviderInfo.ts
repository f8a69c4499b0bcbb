// Hand-written stand-in for the file ts-rs generates from the Rust types. The
// desktop shell build replaces it.
import type { AuthStyle } from "./AuthStyle";

export type ProviderInfo = {
  id: string;
  baseUrl: string;
  auth: AuthStyle;
  authName: string | null;
  builtIn: boolean;
  overridden: boolean;
  needsKey: boolean;
};
