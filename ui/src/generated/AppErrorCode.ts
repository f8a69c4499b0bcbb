// Hand-written stand-in for the file ts-rs generates from the Rust types. The
// desktop shell build replaces it.
export type AppErrorCode =
  | "wrong_password"
  | "vault_missing"
  | "vault_exists"
  | "vault_locked"
  | "vault_busy"
  | "vault_damaged"
  | "invalid_input"
  | "port_in_use"
  | "not_found"
  | "already_exists"
  | "config"
  | "io"
  | "upstream"
  | "internal";
