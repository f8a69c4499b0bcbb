// Fails the build when ui/dist/index.html has anything the release CSP
// (`default-src 'self'; script-src 'self'; style-src 'self'`) would block:
// inline script bodies, <style> elements, style attributes, inline event
// handlers or javascript: URLs. Stylesheets must not load remote files.

import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Lists what in `html` needs 'unsafe-inline' or another source than 'self'.
 * @param {string} html
 * @returns {string[]}
 */
export function findInlineCode(html) {
  /** @type {string[]} */
  const problems = [];
  for (const match of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script\s*>/gi)) {
    const attributes = match[1] ?? "";
    const body = (match[2] ?? "").trim();
    if (body !== "") {
      problems.push(`inline <script> body: ${body.slice(0, 60)}`);
    }
    if (!/\bsrc\s*=/i.test(attributes)) {
      problems.push("<script> without src");
    }
    if (/\bsrc\s*=\s*["']?(https?:)?\/\//i.test(attributes)) {
      problems.push(`remote script: ${attributes.trim()}`);
    }
  }
  if (/<style\b/i.test(html)) {
    problems.push("<style> element");
  }
  for (const match of html.matchAll(/<[^>]*\sstyle\s*=/gi)) {
    problems.push(`style attribute: ${match[0].slice(0, 60)}`);
  }
  for (const match of html.matchAll(/<[^>]*\son[a-z]+\s*=/gi)) {
    problems.push(`inline event handler: ${match[0].slice(0, 60)}`);
  }
  if (/javascript:/i.test(html)) {
    problems.push("javascript: URL");
  }
  for (const match of html.matchAll(/<link\b[^>]*\bhref\s*=\s*["']?(https?:)?\/\/[^>]*>/gi)) {
    problems.push(`remote link: ${match[0].slice(0, 80)}`);
  }
  return problems;
}

/**
 * Lists remote URLs and imports in a stylesheet, such as web fonts.
 * @param {string} css
 * @returns {string[]}
 */
export function findRemoteCss(css) {
  /** @type {string[]} */
  const problems = [];
  for (const match of css.matchAll(/url\(\s*["']?((https?:)?\/\/|data:)[^)]*\)/gi)) {
    problems.push(`remote or data: URL: ${match[0].slice(0, 80)}`);
  }
  if (/@import\b/i.test(css)) {
    problems.push("@import");
  }
  return problems;
}

/**
 * Checks index.html and every stylesheet under `dist`.
 * @param {string} dist
 * @returns {string[]}
 */
export function checkDist(dist) {
  const problems = findInlineCode(readFileSync(join(dist, "index.html"), "utf8")).map((problem) => `index.html: ${problem}`);
  const assets = join(dist, "assets");
  for (const name of readdirSync(assets).filter((file) => file.endsWith(".css"))) {
    problems.push(...findRemoteCss(readFileSync(join(assets, name), "utf8")).map((problem) => `assets/${name}: ${problem}`));
  }
  return problems;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dist = fileURLToPath(new URL("../dist", import.meta.url));
  const problems = checkDist(dist);
  if (problems.length > 0) {
    console.error(`ui/dist breaks the strict CSP:\n  ${problems.join("\n  ")}`);
    process.exit(1);
  }
  console.log("ui/dist: no inline scripts, styles or remote files.");
}
