#!/usr/bin/env node
// Bundles @cairn/core's built modules (packages/core/dist, about 200 files) into a few files in
// packages/core/bundle, which the `cairn` executable, the package's exports and the worker
// threads load. Node's ES module loader costs about half a millisecond per file: a command
// started 100 ms sooner this way (`cairn validate`: 626 -> 524 ms, median of 15).
//
// The entry points share their code through chunks (esbuild's code splitting), so the CLI, a
// plugin's `import … from '@cairn/core'` and `@cairn/core/testing` get the same module
// instances: one class per error type, one plugin host. The bundle sits next to dist/, one folder
// below the package like dist/'s own modules, so the paths they resolve from `import.meta.url`
// (package.json, worker.js, the built-in codec, bin/cairn.js) hold in both. Types stay in dist/.
// Run by `pnpm build` after tsc and bundle-vendor.mjs.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const core = fileURLToPath(new URL('../packages/core/', import.meta.url));
const outdir = `${core}bundle`;
rmSync(outdir, { recursive: true, force: true });
await build({
  entryPoints: {
    index: `${core}dist/index.js`,
    cli: `${core}dist/cli/main.js`,
    testing: `${core}dist/testing/index.js`,
    // Loaded by URL, next to the chunk that names them: pipeline/worker-pool.ts, codecs/builtin.ts.
    worker: `${core}dist/pipeline/worker.js`,
    none: `${core}dist/codecs/none.js`,
    // Loaded by bin/cairn.js before the CLI's code (see pipeline/malloc-arenas.ts).
    'malloc-arenas': `${core}dist/pipeline/malloc-arenas.js`,
  },
  outdir,
  chunkNames: 'chunk-[hash]',
  bundle: true,
  splitting: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // Error classes and DI tokens keep their names in messages and logs.
  keepNames: true,
  // Native addons, and the test runner that only @cairn/core/testing uses.
  external: ['@napi-rs/blake-hash', '@cairn/posix', 'vitest'],
  sourcemap: 'linked',
  legalComments: 'eof',
  logLevel: 'warning',
});
