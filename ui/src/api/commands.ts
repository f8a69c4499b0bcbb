// One typed wrapper per Tauri command of the desktop shell. Command names are
// the Rust snake_case names and argument names are camelCase, as Tauri maps
// them. Every wrapper rejects with a `CommandError` (`{code, message}`).

import { invoke, type InvokeArgs } from "@tauri-apps/api/core";

import type { AppStatus } from "../generated/AppStatus";
import type { CreatedToken } from "../generated/CreatedToken";
import type { ExportFormat } from "../generated/ExportFormat";
import type { ExportResult } from "../generated/ExportResult";
import type { KeySummary } from "../generated/KeySummary";
import type { KeyTestResult } from "../generated/KeyTestResult";
import type { LogFilter } from "../generated/LogFilter";
import type { LogPage } from "../generated/LogPage";
import type { LogTotals } from "../generated/LogTotals";
import type { PasswordStrength } from "../generated/PasswordStrength";
import type { ProviderInfo } from "../generated/ProviderInfo";
import type { ProviderInput } from "../generated/ProviderInput";
import type { SetOutcome } from "../generated/SetOutcome";
import type { Settings } from "../generated/Settings";
import type { KeyPin } from "../generated/KeyPin";
import type { TokenInfo } from "../generated/TokenInfo";
import { CommandError, toAppError } from "./errors";

async function call<T>(command: string, args?: InvokeArgs): Promise<T> {
  try {
    return await invoke<T>(command, args);
  } catch (reason) {
    throw new CommandError(toAppError(reason));
  }
}

/** Fetches the vault state, proxy state, data folder and app version. */
export function appStatus(): Promise<AppStatus> {
  return call("app_status");
}

/** Scores a candidate vault password (0..4) and reports whether it is acceptable. */
export function passwordStrength(password: string): Promise<PasswordStrength> {
  return call("password_strength", { password });
}

/**
 * Creates the vault with `password`, unlocks it and starts the proxy.
 * Rejects with `vault_exists` when a vault is already there.
 */
export function vaultCreate(password: string): Promise<AppStatus> {
  return call("vault_create", { password });
}

/** Unlocks the vault and starts the proxy. Rejects with `wrong_password`. */
export function vaultUnlock(password: string): Promise<AppStatus> {
  return call("vault_unlock", { password });
}

/** Stops the proxy, zeroizes the keys in memory and locks the vault. */
export function vaultLock(): Promise<AppStatus> {
  return call("vault_lock");
}

/** Re-encrypts the vault under `next`. Rejects with `wrong_password` when `current` is wrong. */
export async function vaultChangePassword(current: string, next: string): Promise<void> {
  await call<null>("vault_change_password", { current, next });
}

/** Lists stored keys, masked. The shell never sends a whole provider key. */
export function keysList(): Promise<KeySummary[]> {
  return call("keys_list");
}

/**
 * Stores `key` for `provider` under `label` ("" is the default label), and
 * reports whether it was added or replaced an existing key.
 */
export function keySet(provider: string, label: string, key: string): Promise<SetOutcome> {
  return call("key_set", { provider, label, key });
}

/** Deletes the key stored for `provider` under `label`. */
export async function keyRemove(provider: string, label: string): Promise<void> {
  await call<null>("key_remove", { provider, label });
}

/** Sends the cheapest authenticated request (the model list) with the stored key. */
export function keyTest(provider: string, label: string): Promise<KeyTestResult> {
  return call("key_test", { provider, label });
}

/** Lists built-in and custom providers with their effective base URL and auth style. */
export function providersList(): Promise<ProviderInfo[]> {
  return call("providers_list");
}

/**
 * Writes a custom provider, or a base-URL override of a built-in one, to
 * config.toml, and returns the updated provider list.
 */
export function providerSave(provider: ProviderInput): Promise<ProviderInfo[]> {
  return call("provider_save", { provider });
}

/** Drops the override of a built-in provider or deletes a custom provider. */
export function providerReset(id: string): Promise<ProviderInfo[]> {
  return call("provider_reset", { id });
}

/** Lists client tokens by name and prefix; the tokens themselves are not stored. */
export function tokensList(): Promise<TokenInfo[]> {
  return call("tokens_list");
}

/**
 * Creates a client token whose requests use the pinned keys in place of the
 * providers' default keys. The reply is the only time the whole token is sent.
 */
export function tokenCreate(name: string, keys: KeyPin[] = []): Promise<CreatedToken> {
  return call("token_create", { name, keys });
}

/**
 * Replaces every key pin of the client token called `name`; an empty list
 * makes it use the providers' default keys again.
 */
export function tokenPin(name: string, keys: KeyPin[]): Promise<void> {
  return call("token_pin", { name, keys });
}

/** Revokes the client token called `name`. */
export async function tokenRevoke(name: string): Promise<void> {
  await call<null>("token_revoke", { name });
}

/**
 * Fetches one page of the request log, newest first. `cursor` is the
 * `nextCursor` of the previous page, or null for the first page, and
 * `limit` is 1 to 500.
 */
export function logsQuery(filter: LogFilter, cursor: string | null, limit: number): Promise<LogPage> {
  return call("logs_query", { filter, cursor, limit });
}

/** Sums requests, tokens and cost for local today and this calendar month. */
export function logsTotals(): Promise<LogTotals> {
  return call("logs_totals");
}

/** Writes the rows matching `filter` to a file in the download folder. */
export function logsExport(format: ExportFormat, filter: LogFilter): Promise<ExportResult> {
  return call("logs_export", { format, filter });
}

/** Fetches the settings stored in config.toml, with defaults filled in. */
export function settingsGet(): Promise<Settings> {
  return call("settings_get");
}

/**
 * Saves `settings` and returns them as stored. The shell restarts the proxy
 * when the port, allowed origins or token requirement changed.
 */
export function settingsSave(settings: Settings): Promise<Settings> {
  return call("settings_save", { settings });
}

/**
 * Restarts the proxy on `port`: null means the configured port and 0 any
 * free port.
 */
export function proxyRestart(port: number | null): Promise<AppStatus> {
  return call("proxy_restart", { port });
}

/** Resets the auto-lock idle timer. */
export async function activity(): Promise<void> {
  await call<null>("activity");
}
