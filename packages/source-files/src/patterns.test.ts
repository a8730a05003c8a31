import { describe, expect, it } from 'vitest';
import { ExcludeMatcher, compilePattern, nameText, patternLines } from './patterns.js';

/** Whether `patterns` exclude `relative` (below root `/r`). */
function excluded(patterns: string[], relative: string, isFolder = false, root = '/r'): boolean {
  const name = relative.slice(relative.lastIndexOf('/') + 1);
  return new ExcludeMatcher(patterns).excludes({ name, relative, absolute: `${root}/${relative}` }, isFolder);
}

describe('exclude patterns', () => {
  it('* matches within a name, at any depth when the pattern has no slash', () => {
    expect(excluded(['*.tmp'], 'a.tmp')).toBe(true);
    expect(excluded(['*.tmp'], 'deep/er/a.tmp')).toBe(true);
    expect(excluded(['*.tmp'], 'a.tmpx')).toBe(false);
    expect(excluded(['*.tmp'], 'a.tmp/b')).toBe(false); // the folder itself would be excluded; its children are never asked
    expect(excluded(['node_modules'], 'x/node_modules', true)).toBe(true);
    expect(excluded(['a*c'], 'abbbc')).toBe(true);
  });

  it('? matches one character but not a slash, also a multi-byte one', () => {
    expect(excluded(['f?o'], 'foo')).toBe(true);
    expect(excluded(['f?o'], 'fo')).toBe(false);
    expect(excluded(['f?o'], 'fooo')).toBe(false);
    expect(excluded(['f?o'], 'fäo')).toBe(true);
    expect(excluded(['a?b'], 'a/b')).toBe(false);
  });

  it('[abc], ranges and negated sets', () => {
    expect(excluded(['file[abc].txt'], 'fileb.txt')).toBe(true);
    expect(excluded(['file[abc].txt'], 'filed.txt')).toBe(false);
    expect(excluded(['log[0-9]'], 'log7')).toBe(true);
    expect(excluded(['log[0-9]'], 'logx')).toBe(false);
    expect(excluded(['log[!0-9]'], 'logx')).toBe(true);
    expect(excluded(['log[^0-9]'], 'log7')).toBe(false);
    expect(excluded(['a[!x]b'], 'a/b')).toBe(false);
    expect(excluded(['[]]'], ']')).toBe(true);
    expect(excluded(['x[a'], 'x[a')).toBe(true); // an unclosed [ is itself
  });

  it('a leading / anchors at the root of the backed-up path, or is an absolute path', () => {
    expect(excluded(['/build'], 'build', true)).toBe(true);
    expect(excluded(['/build'], 'src/build', true)).toBe(false);
    expect(excluded(['/r/build'], 'build', true)).toBe(true);
    expect(excluded(['/home/*/.cache'], '.cache', true, '/home/alice')).toBe(true);
    expect(excluded(['/home/*/.cache'], 'x/.cache', true, '/home/alice')).toBe(false);
    expect(excluded(['/home/*/.cache'], 'alice/.cache', true, '/home')).toBe(true);
    expect(excluded(['/home/*/.cache'], 'x/alice/.cache', true, '/home')).toBe(false);
  });

  it('a slash inside anchors too; ** spans folders', () => {
    expect(excluded(['docs/*.log'], 'docs/a.log')).toBe(true);
    expect(excluded(['docs/*.log'], 'x/docs/a.log')).toBe(false);
    expect(excluded(['**/docs/*.log'], 'x/y/docs/a.log')).toBe(true);
    expect(excluded(['**/docs/*.log'], 'docs/a.log')).toBe(true);
    expect(excluded(['**/cache'], 'a/b/cache', true)).toBe(true);
    expect(excluded(['a/**/b'], 'a/b')).toBe(true);
    expect(excluded(['a/**/b'], 'a/x/y/b')).toBe(true);
    expect(excluded(['a/**/b'], 'a/x/y/c')).toBe(false);
    expect(excluded(['out/**'], 'out/x/y')).toBe(true);
    expect(excluded(['out/**'], 'out', true)).toBe(false);
    expect(excluded(['**/u/docs'], 'docs', true, '/home/u')).toBe(true); // through the absolute path
  });

  it('a trailing / matches folders only', () => {
    expect(excluded(['build/'], 'x/build', true)).toBe(true);
    expect(excluded(['build/'], 'x/build', false)).toBe(false);
    expect(excluded(['/out/'], 'out', true)).toBe(true);
  });

  it('! re-includes; the last matching pattern decides', () => {
    const patterns = ['*.log', '!keep.log'];
    expect(excluded(patterns, 'a.log')).toBe(true);
    expect(excluded(patterns, 'keep.log')).toBe(false);
    expect(excluded([...patterns, 'keep*'], 'keep.log')).toBe(true);
    expect(excluded(['\\!important'], '!important')).toBe(true);
  });

  it('\\ escapes special characters', () => {
    expect(excluded(['a\\*b'], 'a*b')).toBe(true);
    expect(excluded(['a\\*b'], 'axb')).toBe(false);
    expect(excluded(['what\\?'], 'what?')).toBe(true);
    expect(excluded(['a+b(c)'], 'a+b(c)')).toBe(true); // regular expression characters are literal
  });

  it('refuses patterns that match nothing or end in a lone backslash', () => {
    expect(() => compilePattern('/')).toThrow(/matches nothing/);
    expect(() => compilePattern('!')).toThrow(/matches nothing/);
    expect(() => compilePattern('abc\\')).toThrow(/lone backslash/);
  });

  it('exclude files: one pattern a line, # comments and blank lines skipped, trailing spaces dropped', () => {
    expect(patternLines('# caches\n*.tmp  \n\n  \r\n/build/\r\n\\#hash\n!keep\n')).toEqual(['*.tmp', '/build/', '\\#hash', '!keep']);
  });
});

describe('nameText', () => {
  it('decodes valid UTF-8, and each invalid byte to its own code point', () => {
    expect(nameText(Buffer.from('äöü.txt'))).toBe('äöü.txt');
    expect(nameText(Buffer.from('\uFFFD'))).toBe('\uFFFD');
    const bad = nameText(Buffer.from([0x61, 0xff, 0xfe, 0x2e, 0x74, 0x6d, 0x70]));
    expect(bad).toBe('a\uDCFF\uDCFE.tmp');
    expect(nameText(Buffer.from([0xc3]))).not.toBe(nameText(Buffer.from([0xc4])));
    expect(new ExcludeMatcher(['a??.tmp']).excludes({ name: bad, relative: bad, absolute: `/${bad}` }, false)).toBe(true);
    expect(nameText(Buffer.from([0xed, 0xa0, 0x80]))).toBe('\uDCED\uDCA0\uDC80'); // an encoded surrogate is invalid UTF-8
  });
});
