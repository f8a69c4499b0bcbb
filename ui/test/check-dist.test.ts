import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import { findInlineCode, findRemoteCss } from "../scripts/check-dist.mjs";

const CLEAN = `<!doctype html><html><head>
<script type="module" crossorigin src="/assets/index-abc.js"></script>
<link rel="stylesheet" crossorigin href="/assets/index-def.css">
</head><body><div id="app"></div></body></html>`;

describe("dist CSP check", () => {
  it("accepts external same-origin scripts and stylesheets", () => {
    expect(findInlineCode(CLEAN)).toEqual([]);
  });

  // Vitest runs from the repository root, where vitest.config.ts is.
  it("accepts the source index.html", () => {
    expect(findInlineCode(readFileSync("ui/index.html", "utf8"))).toEqual([]);
  });

  it.each([
    ["inline script", `<script>window.x = 1</script>`, "inline <script> body"],
    ["script without src", `<script type="module"></script>`, "without src"],
    ["remote script", `<script src="https://cdn.example/x.js"></script>`, "remote script"],
    ["style element", `<style>body{}</style>`, "<style> element"],
    ["style attribute", `<div style="color:red"></div>`, "style attribute"],
    ["event handler", `<button onclick="go()"></button>`, "inline event handler"],
    ["javascript URL", `<a href="javascript:go()"></a>`, "javascript: URL"],
    ["remote stylesheet", `<link rel="stylesheet" href="//fonts.example/css">`, "remote link"],
  ])("rejects an %s", (_name, fragment, problem) => {
    const problems = findInlineCode(CLEAN.replace("</head>", `${fragment}</head>`));
    expect(problems.some((text) => text.includes(problem)), problems.join("; ")).toBe(true);
  });

  it("rejects remote fonts and data URLs in CSS", () => {
    expect(findRemoteCss("body { color: red; }")).toEqual([]);
    expect(findRemoteCss("@font-face { src: url(https://fonts.example/a.woff2) }")).toHaveLength(1);
    expect(findRemoteCss("a { background: url('data:image/png;base64,AAAA') }")).toHaveLength(1);
    expect(findRemoteCss("@import 'x.css';")).toHaveLength(1);
  });
});
