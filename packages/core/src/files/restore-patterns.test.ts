import { describe, expect, it } from 'vitest';
import { UsageError } from '../errors.js';
import { PathPattern, PathSelection } from './restore-patterns.js';

const names = (path: string) => path.split('/').filter((n) => n !== '');

describe('restore path patterns', () => {
  it.each([
    ['/home/u/docs', '/home/u/docs', true],
    ['/home/u/docs', '/home/u/docs2', false],
    ['/home/*/docs', '/home/u/docs', true],
    ['/home/*/docs', '/home/u/v/docs', false],
    ['/home/**/docs', '/home/u/v/docs', true],
    ['/home/**/docs', '/home/docs', true],
    ['home/u/*.txt', '/home/u/a.txt', true],
    ['*.txt', '/deep/down/a.txt', true],
    ['*.txt', '/deep/down/a.txt.bak', false],
    ['a?c', '/x/abc', true],
    ['a?c', '/x/abbc', false],
    ['[ab]1', '/x/b1', true],
    ['[!ab]1', '/x/b1', false],
    ['[!ab]1', '/x/c1', true],
    ['\\*', '/x/*', true],
    ['\\*', '/x/a', false],
    ['/home/**', '/home/u/a', true],
  ])('%s matches %s: %s', (pattern, path, expected) => {
    expect(new PathPattern(pattern).matches(names(path), false)).toBe(expected);
  });

  it('a trailing slash matches folders only', () => {
    const pattern = new PathPattern('cache/');
    expect(pattern.matches(names('/a/cache'), true)).toBe(true);
    expect(pattern.matches(names('/a/cache'), false)).toBe(false);
  });

  it('tells which folders may hold matches below them', () => {
    const anchored = new PathPattern('/home/u/docs/*.txt');
    expect(anchored.couldMatchBelow(names('/home'))).toBe(true);
    expect(anchored.couldMatchBelow(names('/home/u/docs'))).toBe(true);
    expect(anchored.couldMatchBelow(names('/etc'))).toBe(false);
    expect(anchored.couldMatchBelow(names('/home/u/docs/a.txt'))).toBe(false);
    expect(new PathPattern('*.txt').couldMatchBelow(names('/anything'))).toBe(true);
  });

  it('a selection includes everything without include patterns, and excludes win', () => {
    const all = new PathSelection([], ['*.tmp']);
    expect(all.includesAll).toBe(true);
    expect(all.isIncluded(names('/a/b'), false)).toBe(true);
    expect(all.isExcluded(names('/a/b.tmp'), false)).toBe(true);
    const some = new PathSelection(['/home/u'], []);
    expect(some.isIncluded(names('/home/u'), true)).toBe(true);
    expect(some.isIncluded(names('/home/v'), true)).toBe(false);
    expect(some.mayIncludeBelow(names('/home'))).toBe(true);
    expect(some.mayIncludeBelow(names('/etc'))).toBe(false);
  });

  it('refuses an empty pattern and the bare root', () => {
    expect(() => new PathPattern('')).toThrow(UsageError);
    expect(() => new PathPattern('/')).toThrow(UsageError);
  });
});
