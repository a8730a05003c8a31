#!/usr/bin/env node
// Writes packages/core/generated/<name>.cjs: Ajv's standalone code for the schemas every cairn
// command would otherwise compile at start (packages/core/src/validation/precompiled.ts says
// which and why), each with the digest of the schema and options it was made from, which cairn
// checks before using it. Run by `pnpm build` after tsc.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const core = fileURLToPath(new URL('../packages/core/', import.meta.url));
const { precompiledSchemas } = await import(`${core}dist/validation/precompiled-schemas.js`);
const { GENERATED_VALIDATORS_FOLDER, schemaDigest } = await import(`${core}dist/validation/precompiled.js`);
const requireFromCore = createRequire(`${core}package.json`);
const { default: Ajv } = requireFromCore('ajv');
const { default: standaloneCode } = requireFromCore('ajv/dist/standalone');

mkdirSync(GENERATED_VALIDATORS_FOLDER, { recursive: true });
for (const precompiled of precompiledSchemas()) {
  const ajv = new Ajv({ ...precompiled.options, code: { ...precompiled.options.code, source: true } });
  const code = standaloneCode(ajv, ajv.compile(precompiled.schema));
  const file = join(GENERATED_VALIDATORS_FOLDER, `${precompiled.name}.cjs`);
  // Written under a temporary name and renamed: a command starting meanwhile never reads half a file.
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, `${code}\nmodule.exports.digest = ${JSON.stringify(schemaDigest(precompiled))};\n`);
  renameSync(temporary, file);
}
