import { describe, expect, test } from 'vitest';
import { formatBytes, formatRelative, formatSpan } from './format';

describe('figures as a person reads them', () => {
  test('bytes in binary units with three significant digits', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1024)).toBe('1.00 KiB');
    expect(formatBytes(200_000)).toBe('195 KiB');
    expect(formatBytes(27_461_336)).toBe('26.2 MiB');
    expect(formatBytes(5 * 1024 ** 4)).toBe('5.00 TiB');
    expect(formatBytes(undefined)).toBe('–');
  });

  test('spans in their two largest units', () => {
    expect(formatSpan(850)).toBe('850 ms');
    expect(formatSpan(42_000)).toBe('42 s');
    expect(formatSpan(252_000)).toBe('4 min 12 s');
    expect(formatSpan(3 * 3_600_000 + 5 * 60_000 + 7_000)).toBe('3 h 5 min');
    expect(formatSpan(3_600_000)).toBe('1 h 0 min');
    expect(formatSpan(2 * 86_400_000 + 3 * 3_600_000)).toBe('2 d 3 h');
  });

  test('times relative to now', () => {
    const now = Date.parse('2030-01-15T02:00:00Z');
    expect(formatRelative('2030-01-15T02:00:00.400Z', now)).toBe('now');
    expect(formatRelative('2030-01-15T01:56:00Z', now)).toBe('4 min 0 s ago');
    expect(formatRelative('2030-01-16T02:00:00Z', now)).toBe('in 1 d 0 h');
    expect(formatRelative(undefined, now)).toBe('–');
  });
});
