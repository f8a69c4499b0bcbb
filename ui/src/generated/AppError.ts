// Hand-written stand-in for the file ts-rs generates from the Rust types. The
// desktop shell build replaces it.
import type { AppErrorCode } from "./AppErrorCode";

export type AppError = { code: AppErrorCode; message: string };
