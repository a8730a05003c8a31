#!/usr/bin/env node
// Replaces packages/core/dist/vendor.js (tsc's output: plain re-exports) with one bundled
// file holding the libraries it re-exports; see packages/core/src/vendor.ts for why.
// Run by `pnpm build` after tsc.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const core = fileURLToPath(new URL('../packages/core/', import.meta.url));
await build({
  entryPoints: [`${core}src/vendor.ts`],
  outfile: `${core}dist/vendor.js`,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // CommonJS libraries (ajv, semver) call require() for Node's built-in modules.
  banner: { js: "import { createRequire as __cairnCreateRequire } from 'node:module'; const require = __cairnCreateRequire(import.meta.url);" },
  legalComments: 'eof',
  logLevel: 'warning',
});
