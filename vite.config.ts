import { defineConfig } from "vite";

// The Tauri shell loads http://localhost:5173 in development and ui/dist in
// release builds, so the port is fixed and must fail loudly when taken.
export default defineConfig({
  root: "ui",
  clearScreen: false,
  server: {
    port: 5173,
    strictPort: true,
    host: "localhost",
    watch: { ignored: ["**/src-tauri/**", "**/target/**"] },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // The release CSP allows only same-origin files, so no asset may be
    // inlined as a data: URL.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
});
