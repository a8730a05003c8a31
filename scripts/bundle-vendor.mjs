#!/usr/bin/env node
// Replaces packages/core/dist/vendor.js (tsc's output: plain re-exports) with one bundled
// file holding the libraries it re-exports; see packages/core/src/vendor.ts for why.
// Run by `pnpm build` after tsc.
import { build } from 'esbuild';
import { realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const core = fileURLToPath(new URL('../packages/core/', import.meta.url));
// yargs 18 measures text with string-width 8, which returns at once for printable ASCII; cliui
// and wrap-ansi (its help layout) ask for string-width 7, which segments every string it is given
// into graphemes. yargs lays its help out on every command (to show on a later failure), so all
// three get string-width 8: same results, and no segmenter for ASCII text.
const stringWidth = join(dirname(realpathSync(`${core}node_modules/yargs`)), 'string-width');
await build({
  entryPoints: [`${core}src/vendor.ts`],
  outfile: `${core}dist/vendor.js`,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // CommonJS libraries (ajv, semver) call require() for Node's built-in modules.
  banner: { js: "import { createRequire as __cairnCreateRequire } from 'node:module'; const require = __cairnCreateRequire(import.meta.url);" },
  alias: { 'string-width': stringWidth },
  // See scripts/vendor-shims/lazy-segmenter.js.
  define: { 'Intl.Segmenter': 'LazySegmenter' },
  inject: [fileURLToPath(new URL('./vendor-shims/lazy-segmenter.js', import.meta.url))],
  legalComments: 'eof',
  logLevel: 'warning',
});
