import "./styles.css";

import { startApp } from "./app";

const root = document.getElementById("app");
if (root === null) {
  throw new Error("index.html has no #app element to mount Keyport into.");
}
// startApp shows its own error screen when the first status call fails.
void startApp(root).catch(() => undefined);
