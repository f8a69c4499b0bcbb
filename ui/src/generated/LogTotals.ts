// Hand-written stand-in for the file ts-rs generates from the Rust types. The
// desktop shell build replaces it.
import type { Totals } from "./Totals";

export type LogTotals = { today: Totals; month: Totals };
