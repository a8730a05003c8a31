import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Ajv, type Options, type ValidateFunction } from '../vendor.js';
import { CORE_PACKAGE_ROOT } from '../version.js';

/**
 * Ajv validators compiled when cairn is built (scripts/write-validators.mjs writes them to
 * packages/core/generated/) instead of on every command: compiling the plugin manifest schema
 * and JSON Schema's draft-07 meta-schema cost 40-50 ms of each start. Each generated module
 * carries the digest of the schema and options it was made from; when it does not match (the
 * schema changed since the build) or the module is missing, the schema is compiled here as before.
 */
export interface PrecompiledSchema {
  /** The generated module's file name, without `.cjs`. */
  name: string;
  schema: Record<string, unknown>;
  options: Options;
}

export const GENERATED_VALIDATORS_FOLDER = join(CORE_PACKAGE_ROOT, 'generated');

const requireFromCore = createRequire(join(CORE_PACKAGE_ROOT, 'package.json'));

/** What a generated module must carry to be used for `precompiled`. */
export function schemaDigest(precompiled: PrecompiledSchema): string {
  return createHash('sha256').update(JSON.stringify([precompiled.schema, precompiled.options])).digest('hex');
}

/** The build's validator for this schema and these options, else one compiled now. */
export function compileValidator(precompiled: PrecompiledSchema): ValidateFunction {
  return generatedValidator(precompiled) ?? new Ajv(precompiled.options).compile(precompiled.schema);
}

function generatedValidator(precompiled: PrecompiledSchema): ValidateFunction | undefined {
  let generated: ValidateFunction & { digest?: string };
  try {
    generated = requireFromCore(join(GENERATED_VALIDATORS_FOLDER, `${precompiled.name}.cjs`));
  } catch {
    return undefined; // not built (a run from the sources), or unreadable: compiling is always right
  }
  return typeof generated === 'function' && generated.digest === schemaDigest(precompiled) ? generated : undefined;
}

/** JSON Schema draft-07's meta-schema, as Ajv ships it (the schema job schemas declare). */
export function draft07MetaSchema(): PrecompiledSchema {
  return {
    name: 'json-schema-draft-07',
    schema: requireFromCore('ajv/dist/refs/json-schema-draft-07.json'),
    // As Ajv checks a schema handed to compile: every problem, unknown keywords allowed, formats
    // (uri, regex: none is known without ajv-formats) not checked, as Ajv does not for its own
    // meta-schema. Without `meta: false` the instance would hold its own copy of this schema
    // under the same $id, and compiling this one (when no generated module fits) would fail.
    options: { allErrors: true, strict: false, validateSchema: false, validateFormats: false, meta: false },
  };
}

let metaSchemaValidator: ValidateFunction | undefined;

/** Throws as Ajv's `compile` does for a schema that is not valid JSON Schema draft-07. */
export function checkAgainstMetaSchema(schema: object): void {
  // Once per process: the daemon and `validate` check a job schema per combination of types.
  const validate = (metaSchemaValidator ??= compileValidator(draft07MetaSchema()));
  // An Ajv instance only to word the errors as its compile does.
  if (!validate(schema)) throw new Error(`schema is invalid: ${new Ajv({ strict: false }).errorsText(validate.errors)}`);
}
