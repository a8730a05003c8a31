import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Ajv } from '../vendor.js';
import { MANIFEST_VALIDATOR } from '../plugins/manifest.js';
import { checkAgainstMetaSchema, compileValidator, draft07MetaSchema, GENERATED_VALIDATORS_FOLDER, type PrecompiledSchema } from './precompiled.js';
import { precompiledSchemas } from './precompiled-schemas.js';

const built = existsSync(join(GENERATED_VALIDATORS_FOLDER, `${MANIFEST_VALIDATOR.name}.cjs`));

// Cases each validator must judge as Ajv compiling the schema now does, errors included.
const manifests: unknown[] = [
  { contributes: { sources: [{ type: 'volume', schema: 'schema.json' }] } },
  { contributes: { sources: [{ type: 'Volume', schema: 1 }] }, extra: true },
  { activationEvents: ['onTarget:s3', 'whenever'], contributes: { codecs: [{ type: 'zstd', schema: 'z.json', headerId: 0 }] } },
  { contributes: {} },
  'not an object',
];
const schemas: unknown[] = [
  { type: 'object', properties: { a: { type: 'string', minLength: 1 } }, required: ['a'] },
  { type: 'strng' },
  { properties: { a: { minLength: -1 } }, required: 'a' },
  { allOf: [{ if: { const: 1 }, then: { enum: [] } }], $ref: 5 },
  { items: [true, { not: {} }], additionalItems: false, dependencies: { a: ['b', 'b'] } },
];

function verdicts(validate: ReturnType<typeof compileValidator>, cases: unknown[]) {
  return cases.map((value) => ({ valid: validate(structuredClone(value)), errors: validate.errors?.map(({ instancePath, keyword, message, params }) => ({ instancePath, keyword, message, params })) ?? null }));
}

describe.runIf(built)('validators compiled by the build', () => {
  it('are used when their digest matches, and judge exactly as a validator compiled now', () => {
    for (const [precompiled, cases] of [[MANIFEST_VALIDATOR, manifests], [draft07MetaSchema(), schemas]] as const) {
      const generated = compileValidator(precompiled);
      expect((generated as { digest?: string }).digest).toMatch(/^[0-9a-f]{64}$/);
      const compiledNow = new Ajv(precompiled.options).compile(precompiled.schema);
      expect(verdicts(generated, cases)).toEqual(verdicts(compiledNow, cases));
    }
  });

  it('exist for every schema on the list', () => {
    for (const precompiled of precompiledSchemas()) expect(existsSync(join(GENERATED_VALIDATORS_FOLDER, `${precompiled.name}.cjs`))).toBe(true);
  });
});

describe('compileValidator', () => {
  it('compiles the schema when the generated module was made from another schema', () => {
    const changed: PrecompiledSchema = { ...MANIFEST_VALIDATOR, schema: { type: 'object', required: ['renamed'] } };
    const validate = compileValidator(changed);
    expect((validate as { digest?: string }).digest).toBeUndefined();
    expect(validate({ renamed: 1 })).toBe(true);
    expect(validate({ contributes: {} })).toBe(false);
  });

  it('compiles every listed schema when there is no generated module (a fresh clone before the build writes them)', () => {
    for (const precompiled of precompiledSchemas()) {
      // A copy, as the bundle's Ajv sees it: not the very object Ajv itself loaded.
      const validate = new Ajv(precompiled.options).compile(structuredClone(precompiled.schema));
      expect(typeof validate).toBe('function');
    }
  });

  it('compiles the schema when there is no generated module', () => {
    const validate = compileValidator({ name: 'no-such-validator', schema: { type: 'integer' }, options: {} });
    expect([validate(3), validate('3')]).toEqual([true, false]);
  });
});

describe('checkAgainstMetaSchema', () => {
  it('throws what Ajv throws for a schema that is not draft-07, and accepts one that is', () => {
    let rejected = 0;
    for (const schema of schemas as object[]) {
      let ajvMessage: string | undefined;
      try {
        new Ajv({ allErrors: true, strict: false }).compile(structuredClone(schema));
      } catch (err) {
        ajvMessage = (err as Error).message;
      }
      const ours = () => checkAgainstMetaSchema(structuredClone(schema));
      if (ajvMessage?.startsWith('schema is invalid')) {
        rejected++;
        expect(ours).toThrow(ajvMessage);
      } else expect(ours).not.toThrow();
    }
    expect(rejected).toBe(4);
  });
});
