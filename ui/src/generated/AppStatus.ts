// Hand-written stand-in for the file ts-rs generates from the Rust types. The
// desktop shell build replaces it.
import type { ProxyStatus } from "./ProxyStatus";
import type { VaultState } from "./VaultState";

export type AppStatus = {
  vault: VaultState;
  proxy: ProxyStatus;
  dataDir: string;
  version: string;
};
