import { describe, expect, it } from 'vitest';
import { UsageError } from '../errors.js';
import { compileGlob } from './glob.js';

describe('find patterns', () => {
  it('matches names with *, ? and sets, never across a slash', () => {
    const txt = compileGlob('*.txt');
    expect(txt.onPath).toBe(false);
    expect(['a.txt', '.txt', 'a.txt.bak', 'a/b.txt'].map((n) => txt.matches(n))).toEqual([true, true, false, false]);
    expect(compileGlob('report-??.pdf').matches('report-07.pdf')).toBe(true);
    expect(compileGlob('report-??.pdf').matches('report-7.pdf')).toBe(false);
    expect(compileGlob('[a-c]*').matches('bravo')).toBe(true);
    expect(compileGlob('[!a-c]*').matches('bravo')).toBe(false);
    expect(compileGlob('a+b (1).txt').matches('a+b (1).txt')).toBe(true);
    expect(compileGlob('\\*').matches('*')).toBe(true);
    expect(compileGlob('\\*').matches('x')).toBe(false);
  });

  it('matches whole paths when the pattern has a slash, at any depth unless it starts with one', () => {
    const docs = compileGlob('docs/*.txt');
    expect(docs.onPath).toBe(true);
    expect(docs.matches('/home/u/docs/a.txt')).toBe(true);
    expect(docs.matches('/docs/a.txt')).toBe(true);
    expect(docs.matches('/home/u/mydocs/a.txt')).toBe(false);
    expect(docs.matches('/home/u/docs/x/a.txt')).toBe(false);
    expect(compileGlob('/home/*/docs').matches('/home/u/docs')).toBe(true);
    expect(compileGlob('/home/*/docs').matches('/srv/home/u/docs')).toBe(false);
    expect(compileGlob('/home/**/*.jpg').matches('/home/u/p/2026/a.jpg')).toBe(true);
    expect(compileGlob('/home/**/*.jpg').matches('/home/a.jpg')).toBe(true);
    expect(compileGlob('/home/**').matches('/home/u/x')).toBe(true);
  });

  it('ignores case on request, and refuses broken patterns', () => {
    expect(compileGlob('*.JPG').matches('a.jpg')).toBe(false);
    expect(compileGlob('*.JPG', { ignoreCase: true }).matches('a.jpg')).toBe(true);
    expect(() => compileGlob('')).toThrow(UsageError);
    expect(() => compileGlob('[abc')).toThrow(UsageError);
  });
});
