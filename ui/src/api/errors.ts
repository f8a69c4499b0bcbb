// Normalises every rejection from `invoke` into an `AppError`, so screens
// branch on `code` and never parse message text.

import type { AppError } from "../generated/AppError";
import type { AppErrorCode } from "../generated/AppErrorCode";

/** Every code the shell can send, checked against the generated union below. */
export const APP_ERROR_CODES = [
  "wrong_password",
  "vault_missing",
  "vault_exists",
  "vault_locked",
  "vault_busy",
  "vault_damaged",
  "invalid_input",
  "port_in_use",
  "not_found",
  "already_exists",
  "config",
  "io",
  "upstream",
  "internal",
] as const satisfies readonly AppErrorCode[];

// Fails to compile when the generated union gains a code that the list above
// lacks, so `isAppErrorCode` cannot silently turn a new code into `internal`.
type MissingCode = Exclude<AppErrorCode, (typeof APP_ERROR_CODES)[number]>;
const everyCodeListed: [MissingCode] extends [never] ? true : false = true;
void everyCodeListed;

/** An `AppError` thrown as an `Error`, so it keeps a stack trace. */
export class CommandError extends Error implements AppError {
  readonly code: AppErrorCode;

  constructor(error: AppError) {
    super(error.message);
    this.name = "CommandError";
    this.code = error.code;
  }
}

export function isAppErrorCode(value: unknown): value is AppErrorCode {
  return typeof value === "string" && (APP_ERROR_CODES as readonly string[]).includes(value);
}

/**
 * Converts anything `invoke` rejects with into an `AppError`. The shell sends
 * `{code, message}`; Tauri itself rejects with a plain string when a command
 * is missing or its arguments do not deserialize, and those become
 * `internal`. An unknown code also becomes `internal`, keeping the message.
 */
export function toAppError(reason: unknown): AppError {
  if (reason instanceof CommandError) {
    return { code: reason.code, message: reason.message };
  }
  if (typeof reason === "object" && reason !== null) {
    const { code, message } = reason as { code?: unknown; message?: unknown };
    const text = typeof message === "string" ? message : "The command failed without a message.";
    if (isAppErrorCode(code)) {
      return { code, message: text };
    }
    if (typeof message === "string") {
      return { code: "internal", message };
    }
  }
  if (typeof reason === "string" && reason.length > 0) {
    return { code: "internal", message: reason };
  }
  return { code: "internal", message: "The command failed with an unexpected error." };
}

