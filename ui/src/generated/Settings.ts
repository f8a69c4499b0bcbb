// Hand-written stand-in for the file ts-rs generates from the Rust types. The
// desktop shell build replaces it.
export type Settings = {
  port: number;
  allowedOrigins: Array<string>;
  requireToken: boolean;
  autoLockMinutes: number;
  lockOnScreenLock: boolean;
  startAtLogin: boolean;
  retentionDays: number;
  maxRows: number;
  captureBodies: boolean;
  bodyCaptureLimitKib: number;
};
