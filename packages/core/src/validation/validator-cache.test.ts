import { chmodSync, chownSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Ajv, type ValidateFunction } from '../vendor.js';
import { ValidatorCache, cacheFolder } from './validator-cache.js';

const schema = {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', pattern: '^[a-z]+$' },
    level: { type: 'integer', minimum: 1, maximum: 19, default: 3 },
    target: { type: 'object', required: ['type'], allOf: [{ if: { properties: { type: { const: 'local' } } }, then: { required: ['path'] } }] },
  },
};
const options = { allErrors: true, strict: false, useDefaults: true, verbose: true, validateSchema: false } as const;
const cases: unknown[] = [{ name: 'abc' }, { name: 'ABC', level: 40, extra: 1 }, { name: 'x', target: { type: 'local' } }, { target: 5 }, 'not an object'];

/** What a validator makes of each case: its verdict, its errors, and the case as it left it (defaults filled in). */
function verdicts(validate: ValidateFunction) {
  return cases.map((value) => {
    const copy = structuredClone(value);
    const valid = validate(copy);
    const errors = validate.errors?.map(({ instancePath, schemaPath, keyword, params, message, data }) => ({ instancePath, schemaPath, keyword, params, message, data })) ?? null;
    return { valid, errors, copy };
  });
}

const kept = (validate: ValidateFunction) => typeof (validate as { digest?: unknown }).digest === 'string';

describe('ValidatorCache', () => {
  let folder: string;
  beforeEach(() => void (folder = mkdtempSync(join(tmpdir(), 'cairn-validator-cache-'))));
  afterEach(() => rmSync(folder, { recursive: true, force: true }));

  const keptFile = () => join(folder, 'validators', readdirSync(join(folder, 'validators'))[0]!);

  it('compiles a schema once, keeps it, and later judges with the kept code exactly as a validator compiled now', () => {
    const first = new ValidatorCache(folder).compile(schema, options);
    expect(kept(first)).toBe(false);
    expect(readdirSync(join(folder, 'validators'))).toEqual([expect.stringMatching(/^[0-9a-f]{64}\.cjs$/)]);
    const second = new ValidatorCache(folder).compile(schema, options);
    expect(kept(second)).toBe(true);
    const now = new Ajv(options).compile(schema);
    expect(verdicts(second)).toEqual(verdicts(now));
    expect(verdicts(first)).toEqual(verdicts(now));
    // Another schema or other options are another file.
    new ValidatorCache(folder).compile({ ...schema, required: [] }, options);
    new ValidatorCache(folder).compile(schema, { ...options, allErrors: false });
    expect(readdirSync(join(folder, 'validators'))).toHaveLength(3);
    // Files not written for 30 days go when another is written.
    const old = new Date(Date.now() - 31 * 24 * 3600 * 1000);
    for (const name of readdirSync(join(folder, 'validators'))) utimesSync(join(folder, 'validators', name), old, old);
    new ValidatorCache(folder).compile({ ...schema, description: 'new' }, options);
    expect(readdirSync(join(folder, 'validators'))).toHaveLength(1);
  });

  it('checks a schema before compiling it, but not when it uses a kept validator', () => {
    const refuse = () => {
      throw new Error('schema is invalid');
    };
    expect(() => new ValidatorCache(folder).compile(schema, options, refuse)).toThrow('schema is invalid');
    expect(() => new ValidatorCache(undefined).compile(schema, options, refuse)).toThrow('schema is invalid');
    let checked = 0;
    new ValidatorCache(folder).compile(schema, options, () => void checked++);
    expect(kept(new ValidatorCache(folder).compile(schema, options, refuse))).toBe(true);
    expect(checked).toBe(1);
  });

  it('uses a kept file only when nobody else may write it and it carries its name', () => {
    new ValidatorCache(folder).compile(schema, options);
    const file = keptFile();
    for (const mode of [0o620, 0o602, 0o666]) {
      chmodSync(file, mode);
      expect(kept(new ValidatorCache(folder).compile(schema, options))).toBe(false);
    }
    chmodSync(file, 0o644);
    expect(kept(new ValidatorCache(folder).compile(schema, options))).toBe(true);
    if (process.geteuid?.() === 0) {
      chownSync(file, 65534, 65534); // another user's (nobody's) file
      expect(kept(new ValidatorCache(folder).compile(schema, options))).toBe(false);
      chownSync(file, 0, 0);
    }
    // Code that answers to another digest, or none at all, is not taken for this schema's.
    writeFileSync(file, readFileSync(file, 'utf8').replace(/digest = "[0-9a-f]+"/, `digest = "${'0'.repeat(64)}"`));
    expect(kept(new ValidatorCache(folder).compile(schema, options))).toBe(false);
    writeFileSync(file, 'module.exports = () => true;');
    const compiled = new ValidatorCache(folder).compile(schema, options);
    expect(kept(compiled)).toBe(false);
    expect(compiled({})).toBe(false);
    writeFileSync(file, 'this is not JavaScript {');
    expect(kept(new ValidatorCache(folder).compile(schema, options))).toBe(false);
  });

  it('still compiles when nothing can be kept', () => {
    writeFileSync(join(folder, 'validators'), 'a file where the folder would be');
    const validate = new ValidatorCache(folder).compile(schema, options);
    expect(verdicts(validate)).toEqual(verdicts(new Ajv(options).compile(schema)));
    expect(kept(new ValidatorCache(undefined).compile(schema, options))).toBe(false);
  });
});

describe('cacheFolder', () => {
  it('is CAIRN_CACHE_DIR, else under XDG_CACHE_HOME, else under HOME; only absolute paths count', () => {
    expect(cacheFolder({ CAIRN_CACHE_DIR: '/var/cache/cairn', XDG_CACHE_HOME: '/x', HOME: '/root' })).toBe('/var/cache/cairn');
    expect(cacheFolder({ XDG_CACHE_HOME: '/x', HOME: '/root' })).toBe('/x/cairn');
    expect(cacheFolder({ XDG_CACHE_HOME: 'relative', HOME: '/root' })).toBe('/root/.cache/cairn');
    expect(cacheFolder({ HOME: '/home/ann' })).toBe('/home/ann/.cache/cairn');
    expect(cacheFolder({})).toBeUndefined();
    // An empty (or relative) CAIRN_CACHE_DIR turns the cache off.
    expect(cacheFolder({ CAIRN_CACHE_DIR: '', HOME: '/root' })).toBeUndefined();
    expect(cacheFolder({ CAIRN_CACHE_DIR: 'cache', HOME: '/root' })).toBeUndefined();
  });
});
