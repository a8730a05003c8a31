import { MANIFEST_VALIDATOR } from '../plugins/manifest.js';
import { draft07MetaSchema, type PrecompiledSchema } from './precompiled.js';

/** Every schema scripts/write-validators.mjs compiles when cairn is built. */
export function precompiledSchemas(): PrecompiledSchema[] {
  return [MANIFEST_VALIDATOR, draft07MetaSchema()];
}
