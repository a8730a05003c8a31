#!/usr/bin/env node
// Writes packages/core/job.schema.json: the job schema with the settings of every plugin that
// the workspace's plugins.json enables, as `cairn schema` prints it. @cairn/core exports the
// file, so a job file's "$schema": "./node_modules/@cairn/core/job.schema.json" gives editors
// completion and validation. Run by `pnpm build` after tsc and bundle-vendor.mjs.
//
// It goes through the CLI, the public interface, rather than core internals, so the file is
// exactly what a user's `cairn schema > job.schema.json` would give. It fails the build (exit 1,
// with the CLI's own words) when the CLI fails, when a plugin could not be loaded (its settings
// would silently be missing from the schema), or when the output is not a JSON Schema.
import { spawnSync } from 'node:child_process';
import { renameSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = `${ROOT}packages/core/bin/cairn.js`;
const PLUGINS = `${ROOT}plugins.json`;
const OUTPUT = `${ROOT}packages/core/job.schema.json`;

function fail(message) {
  process.stderr.write(`write-job-schema: FAILED: ${message}\n`);
  process.exit(1);
}

function cairn(...args) {
  const result = spawnSync(process.execPath, [CLI, ...args, '--plugins', PLUGINS], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (result.error) fail(`could not run cairn ${args.join(' ')}: ${result.error.message}`);
  if (result.status !== 0) {
    fail(`cairn ${args.join(' ')} exited with ${result.status ?? result.signal}\n${result.stdout}${result.stderr}`);
  }
  return result.stdout;
}

// `cairn plugins` exits non-zero when a plugin failed to load; `cairn schema` would succeed
// without that plugin's settings.
cairn('plugins');

const text = cairn('schema');
let schema;
try {
  schema = JSON.parse(text);
} catch (err) {
  fail(`cairn schema printed something that is not JSON (${err.message}):\n${text.slice(0, 2000)}`);
}
if (typeof schema?.$schema !== 'string' || typeof schema.properties !== 'object') {
  fail(`cairn schema printed JSON that is not a job schema:\n${text.slice(0, 2000)}`);
}

// Written under a temporary name and renamed, so an editor never reads half a file.
const temporary = `${OUTPUT}.${process.pid}.tmp`;
writeFileSync(temporary, text);
renameSync(temporary, OUTPUT);
