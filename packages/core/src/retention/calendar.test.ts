import { afterEach, describe, expect, it } from 'vitest';
import { formatInZone, instantOfWall, isValidTimeZone, isoWeek, localTimeZone, parseIsoDateTime, subtractCalendar, wallClock, zoneOffset } from './calendar.js';

const at = (iso: string) => Date.parse(iso);
/** The wall clock as `YYYY-MM-DD HH:MM`. */
function wall(iso: string, zone?: string): string {
  const w = wallClock(at(iso), zone);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${w.year}-${p(w.month)}-${p(w.day)} ${p(w.hour)}:${p(w.minute)}`;
}

describe('wall clock in a zone', () => {
  it('reads the date and hour of an instant in the zone asked for', () => {
    // Winter: Berlin is UTC+1, so 23:30 UTC is already the next day there.
    expect(wall('2026-01-15T23:30:00Z', 'Europe/Berlin')).toBe('2026-01-16 00:30');
    // Summer time began on 29 March 2026: UTC+2, and the next month there.
    expect(wall('2026-03-31T23:30:00Z', 'Europe/Berlin')).toBe('2026-04-01 01:30');
    expect(wall('2026-01-01T03:00:00Z', 'America/New_York')).toBe('2025-12-31 22:00');
    expect(wall('2026-06-30T18:45:00Z', 'Asia/Kolkata')).toBe('2026-07-01 00:15');
    expect(wall('2026-06-30T18:45:00Z', 'UTC')).toBe('2026-06-30 18:45');
    // Midnight is hour 0, never 24.
    expect(wall('2026-06-30T22:00:00Z', 'Europe/Berlin')).toBe('2026-07-01 00:00');
  });

  it('keeps milliseconds and handles years before 1970 and 1000', () => {
    expect(wallClock(at('2026-05-01T10:00:00.123Z'), 'UTC').millisecond).toBe(123);
    expect(wallClock(at('1969-12-31T23:59:59.999Z'), 'UTC')).toMatchObject({ year: 1969, month: 12, day: 31, hour: 23, millisecond: 999 });
    expect(wallClock(Date.UTC(999, 0, 1) + 0, 'UTC').year).toBe(999);
  });

  it('gives zone offsets, east positive, with DST', () => {
    expect(zoneOffset(at('2026-01-15T12:00:00Z'), 'Europe/Berlin')).toBe(3_600_000);
    expect(zoneOffset(at('2026-07-15T12:00:00Z'), 'Europe/Berlin')).toBe(7_200_000);
    expect(zoneOffset(at('2026-07-15T12:00:00Z'), 'America/Los_Angeles')).toBe(-7 * 3_600_000);
    expect(zoneOffset(at('2026-07-15T12:00:00Z'), 'Asia/Kolkata')).toBe(5.5 * 3_600_000);
  });

  it('turns a wall time back into the instant it names', () => {
    expect(new Date(instantOfWall(Date.UTC(2026, 0, 16, 0, 30), 'Europe/Berlin')).toISOString()).toBe('2026-01-15T23:30:00.000Z');
    expect(new Date(instantOfWall(Date.UTC(2026, 3, 1, 1, 30), 'Europe/Berlin')).toISOString()).toBe('2026-03-31T23:30:00.000Z');
    // 02:30 on 29 March 2026 never happened in Berlin (02:00 became 03:00): an instant next to the gap.
    expect(['2026-03-29T00:30:00.000Z', '2026-03-29T01:30:00.000Z']).toContain(new Date(instantOfWall(Date.UTC(2026, 2, 29, 2, 30), 'Europe/Berlin')).toISOString());
  });

  it('formats an instant as the wall clock and offset of the zone', () => {
    expect(formatInZone(at('2026-12-01T02:00:00Z'), 'Europe/Berlin')).toBe('2026-12-01 03:00:00 +01:00');
    expect(formatInZone(at('2026-12-01T02:00:00Z'), 'Asia/Kolkata')).toBe('2026-12-01 07:30:00 +05:30');
    expect(formatInZone(at('2026-12-01T02:00:00Z'), 'America/New_York')).toBe('2026-11-30 21:00:00 -05:00');
    expect(formatInZone(at('2026-12-01T02:00:00Z'), 'UTC')).toBe('2026-12-01 02:00:00 +00:00');
  });

  it('knows valid zone names and refuses others', () => {
    expect(isValidTimeZone('Europe/Berlin')).toBe(true);
    expect(isValidTimeZone('UTC')).toBe(true);
    expect(isValidTimeZone('Mars/Olympus_Mons')).toBe(false);
    expect(isValidTimeZone('')).toBe(false);
  });
});

describe('the local zone', () => {
  const saved = process.env.TZ;
  afterEach(() => {
    if (saved === undefined) delete process.env.TZ;
    else process.env.TZ = saved;
  });

  it('is the process TZ, read at each call', () => {
    process.env.TZ = 'Europe/Berlin';
    expect(localTimeZone()).toBe('Europe/Berlin');
    expect(wall('2026-01-15T23:30:00Z')).toBe('2026-01-16 00:30');
    process.env.TZ = 'America/New_York';
    expect(localTimeZone()).toBe('America/New_York');
    expect(wall('2026-01-15T23:30:00Z')).toBe('2026-01-15 18:30');
  });
});

describe('ISO 8601 weeks', () => {
  // Weekdays worked out from 1 January 2026, a Thursday.
  it.each([
    // date, ISO week-year, week
    ['2026-01-01', 2026, 1], // Thursday: week 1 holds the year's first Thursday
    ['2025-12-29', 2026, 1], // Monday of that week, still December
    ['2025-12-28', 2025, 52], // Sunday before it
    ['2026-06-14', 2026, 24], // Sunday …
    ['2026-06-15', 2026, 25], // … Monday: a new week
    ['2026-12-27', 2026, 52], // Sunday
    ['2026-12-28', 2026, 53], // 2026 starts on a Thursday: it has 53 weeks
    ['2027-01-03', 2026, 53], // a January Sunday in the previous year's last week
    ['2027-01-04', 2027, 1],
    ['2020-12-31', 2020, 53], // leap year starting on a Wednesday: 53 weeks
    ['2021-01-03', 2020, 53],
    ['2021-01-04', 2021, 1],
    ['2024-12-29', 2024, 52],
    ['2024-12-30', 2025, 1], // a December Monday in the next year's week 1
    ['2025-01-05', 2025, 1],
    ['2025-01-06', 2025, 2],
  ] as const)('%s is week %i-W%i', (date, year, week) => {
    const [y, m, d] = date.split('-').map(Number) as [number, number, number];
    expect(isoWeek(y, m, d)).toEqual({ year, week });
  });
});

describe('calendar arithmetic', () => {
  const minus = (iso: string, amount: Partial<{ years: number; months: number; days: number; hours: number }>, zone?: string) =>
    new Date(subtractCalendar(at(iso), { years: 0, months: 0, days: 0, hours: 0, ...amount }, zone)).toISOString();

  it('moves back whole days on the wall clock: 23 hours across the spring DST change in Berlin', () => {
    // 12:00 CEST on 29 March back one day is 12:00 CET on 28 March.
    expect(minus('2026-03-29T10:00:00Z', { days: 1 }, 'Europe/Berlin')).toBe('2026-03-28T11:00:00.000Z');
    expect(minus('2026-03-29T10:00:00Z', { days: 1 }, 'UTC')).toBe('2026-03-28T10:00:00.000Z');
    // Hours are elapsed time, whatever the zone.
    expect(minus('2026-03-29T10:00:00Z', { hours: 24 }, 'Europe/Berlin')).toBe('2026-03-28T10:00:00.000Z');
  });

  it('normalises like Go AddDate: 31 March minus a month is 3 March (2 March in a leap year)', () => {
    expect(minus('2026-03-31T12:00:00Z', { months: 1 }, 'UTC')).toBe('2026-03-03T12:00:00.000Z');
    expect(minus('2024-03-31T12:00:00Z', { months: 1 }, 'UTC')).toBe('2024-03-02T12:00:00.000Z');
    expect(minus('2026-01-15T12:00:00Z', { months: 1 }, 'UTC')).toBe('2025-12-15T12:00:00.000Z');
    expect(minus('2026-06-10T12:00:00Z', { years: 1, months: 6 }, 'UTC')).toBe('2024-12-10T12:00:00.000Z');
    expect(minus('2026-06-10T12:00:00Z', { days: 14, hours: 2 }, 'UTC')).toBe('2026-05-27T10:00:00.000Z');
  });
});

describe('ISO 8601 dates and times', () => {
  const iso = (text: string, zone?: string) => parseIsoDateTime(text, zone).toISOString();

  it.each([
    ['2026-05-01T14:30:00Z', '2026-05-01T14:30:00.000Z'],
    ['2026-05-01T14:30:00.25Z', '2026-05-01T14:30:00.250Z'],
    ['2026-05-01T14:30:00,123456z', '2026-05-01T14:30:00.123Z'],
    ['2026-05-01T14:30Z', '2026-05-01T14:30:00.000Z'],
    ['2026-05-01 14:30:00+02:00', '2026-05-01T12:30:00.000Z'],
    ['2026-05-01T14:30:00-0530', '2026-05-01T20:00:00.000Z'],
    ['2026-05-01T01:00:00+05', '2026-04-30T20:00:00.000Z'],
    ['2024-02-29T00:00:00Z', '2024-02-29T00:00:00.000Z'],
  ])('%s is %s', (text, expected) => {
    expect(iso(text)).toBe(expected);
  });

  it('reads a time without offset, or a date alone, as wall-clock time in the zone', () => {
    expect(iso('2026-01-15T12:00', 'Europe/Berlin')).toBe('2026-01-15T11:00:00.000Z');
    expect(iso('2026-07-15T12:00:00', 'Europe/Berlin')).toBe('2026-07-15T10:00:00.000Z');
    expect(iso('2026-07-15', 'Europe/Berlin')).toBe('2026-07-14T22:00:00.000Z');
    expect(iso('2026-07-15', 'UTC')).toBe('2026-07-15T00:00:00.000Z');
  });

  it.each(['', 'yesterday', '2026-5-1', '2026-05-01T', '2026-05-01T14', '2026-13-01', '2026-02-29', '2026-04-31', '2026-05-00', '2026-05-01T24:00', '2026-05-01T14:60', '2026-05-01T14:30:61Z', '2026-05-01T14:30+25:00', '2026-05-01Z', '1714567800', ' 2026-05-01'])(
    'refuses %j',
    (text) => {
      expect(() => parseIsoDateTime(text, 'UTC')).toThrow(RangeError);
    },
  );
});
