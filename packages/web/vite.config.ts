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
    // `vite dev` for a person working on the pages: API calls go to a daemon started with --web
    // (CAIRN_WEB_URL, default http://127.0.0.1:8780), signed in with CAIRN_WEB_TOKEN (the
    // daemon's <state dir>/web-token) as a Bearer token. The dev server's Origin is not the
    // daemon's, so it is dropped: the proxy stands where the daemon's own page would.
    proxy: {
      '/api': {
        target: process.env.CAIRN_WEB_URL ?? 'http://127.0.0.1:8780',
        changeOrigin: true,
        headers: process.env.CAIRN_WEB_TOKEN ? { Authorization: `Bearer ${process.env.CAIRN_WEB_TOKEN}` } : {},
        configure: (proxy) => proxy.on('proxyReq', (request) => request.removeHeader('origin')),
      },
    },
  },
});
