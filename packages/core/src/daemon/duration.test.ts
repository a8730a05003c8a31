import { describe, expect, test } from 'vitest';
import { formatDurationMs, parseDurationMs } from './duration.js';

describe('durations', () => {
  test('units add up', () => {
    expect(parseDurationMs('90s')).toBe(90_000);
    expect(parseDurationMs('10m')).toBe(600_000);
    expect(parseDurationMs('1h30m')).toBe(5_400_000);
    expect(parseDurationMs('1d')).toBe(86_400_000);
    expect(parseDurationMs('250ms')).toBe(250);
    expect(parseDurationMs('0s')).toBe(0);
  });

  test('anything else is refused, saying what a duration looks like', () => {
    for (const bad of ['', '10', '1.5h', '6 h', 'h', '-1m', '1w']) expect(() => parseDurationMs(bad)).toThrow(/is not a duration such as 30s/);
  });

  test('formatting reads back', () => {
    for (const ms of [0, 250, 90_000, 5_400_000, 86_400_000 + 1000]) expect(parseDurationMs(formatDurationMs(ms))).toBe(ms);
    expect(formatDurationMs(5_400_000)).toBe('1h30m');
  });
});
