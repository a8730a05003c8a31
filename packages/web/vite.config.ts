import { defineConfig } from 'vite';

/*
 * The dashboard is served by the daemon under `Content-Security-Policy: default-src 'self'`:
 * every asset is a file of its own (nothing inlined as a data: URL, no inline script or
 * style), and nothing is fetched from anywhere but the daemon.
 */
export default defineConfig({
  root: 'src',
  base: '/',
  publicDir: '../public',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: '../dist/app',
    emptyOutDir: true,
    assetsInlineLimit: 0,
    cssCodeSplit: false,
    modulePreload: { polyfill: false },
    sourcemap: false,
    reportCompressedSize: false,
  },
  server: {
    // `vite dev` for a person working on the pages: API calls go to a daemon started with --web.
    proxy: { '/api': { target: process.env.CAIRN_WEB_URL ?? 'http://127.0.0.1:8780', changeOrigin: false } },
  },
});
