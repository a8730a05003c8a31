import { describe, expect, it } from 'vitest';
import { Ajv } from '../vendor.js';
import { manifestProblems, manifestSchema } from './manifest.js';

describe('plugin manifest schema', () => {
  it('is a valid JSON Schema (checked here once, so that no command start pays for the check)', () => {
    const ajv = new Ajv({ allErrors: true, strict: false });
    expect(ajv.validateSchema(manifestSchema)).toBe(true);
    expect(ajv.errors ?? null).toBeNull();
  });

  it('still refuses a manifest that breaks it, with the path of the problem', () => {
    expect(manifestProblems({ contributes: { targets: [{ type: 3 }] } })).not.toEqual([]);
    expect(manifestProblems({ contributes: { targets: [{ type: 3 }] } }).join('\n')).toContain('cairn.contributes.targets.0');
  });
});
