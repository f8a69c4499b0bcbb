// Hand-written stand-in for the file ts-rs generates from the Rust types. The
// desktop shell build replaces it.
export type StatusClass = "2xx" | "4xx" | "5xx" | "error";
