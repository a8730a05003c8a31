import { expect, test } from 'vitest';
import { literalPattern } from './restore-pattern';

test('a picked path becomes a pattern whose wildcards and escapes are literal', () => {
  expect(literalPattern('/home/u/docs')).toBe('/home/u/docs');
  expect(literalPattern('/srv/a[1]/*.txt')).toBe('/srv/a\\[1\\]/\\*.txt');
  expect(literalPattern('/srv/what?')).toBe('/srv/what\\?');
  expect(literalPattern('/srv/back\\slash')).toBe('/srv/back\\\\slash');
});
