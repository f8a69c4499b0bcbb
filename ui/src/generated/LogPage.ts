// Hand-written stand-in for the file ts-rs generates from the Rust types. The
// desktop shell build replaces it.
import type { LogRow } from "./LogRow";

export type LogPage = { rows: Array<LogRow>; nextCursor: string | null };
