/**
 * Wall-clock time in an IANA time zone, through Intl.DateTimeFormat (no time zone data of
 * our own): the calendar buckets of a retention policy, ISO 8601 weeks, and calendar
 * arithmetic (a day is a calendar day, 23 or 25 hours across a DST change).
 */

/** The wall clock of an instant in a zone. `month` is 1-12. */
export interface WallClock {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  millisecond: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** `undefined` is the process's local zone. */
function formatterFor(timeZone: string | undefined): Intl.DateTimeFormat {
  // Resolved on every call: the process's zone changes when TZ is assigned at run time.
  const key = timeZone ?? localTimeZone();
  let formatter = formatters.get(key);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone: key,
      hourCycle: 'h23',
      era: 'short',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(key, formatter);
  }
  return formatter;
}

/** Whether `name` is a time zone this runtime knows (an IANA name such as `Europe/Berlin`, or `UTC`). */
export function isValidTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

/** The zone `undefined` stands for: the process's local zone (`TZ`, else the system's). */
export function localTimeZone(): string {
  return new Intl.DateTimeFormat().resolvedOptions().timeZone;
}

/** The wall clock of `instant` (ms since the epoch) in `timeZone` (default: local). */
export function wallClock(instant: number, timeZone?: string): WallClock {
  const parts: Record<string, string> = {};
  for (const part of formatterFor(timeZone).formatToParts(new Date(instant))) parts[part.type] = part.value;
  const year = Number(parts.year);
  return {
    // Years before 1 CE come as "1 BC" and so on; astronomical numbering keeps them ordered.
    year: parts.era === 'BC' || parts.era === 'B' ? 1 - year : year,
    month: Number(parts.month),
    day: Number(parts.day),
    hour: Number(parts.hour),
    minute: Number(parts.minute),
    second: Number(parts.second),
    millisecond: ((instant % 1000) + 1000) % 1000,
  };
}

/** The wall clock read as if it were UTC: the arithmetic value of a wall time, in ms. */
function wallAsUtc(w: WallClock): number {
  const date = new Date(0);
  date.setUTCFullYear(w.year, w.month - 1, w.day);
  date.setUTCHours(w.hour, w.minute, w.second, w.millisecond);
  return date.getTime();
}

/** The zone's offset from UTC at `instant`, in ms (east positive: +3 600 000 for CET). */
export function zoneOffset(instant: number, timeZone?: string): number {
  return wallAsUtc(wallClock(instant, timeZone)) - instant;
}

/**
 * The instant a wall-clock time (given as `wallAsUtc`-style ms) names in a zone. A wall time
 * that occurs twice (clocks set back) gives the earlier instant when the offsets agree with
 * it, one that never occurs (clocks set forward) an instant next to the gap; either way a
 * fixed, deterministic answer.
 */
export function instantOfWall(wallMs: number, timeZone?: string): number {
  const first = wallMs - zoneOffset(wallMs, timeZone);
  const offset = zoneOffset(first, timeZone);
  return wallMs - offset;
}

/** ISO 8601 week of a calendar date: weeks start on Monday; week 1 holds the year's first Thursday. */
export function isoWeek(year: number, month: number, day: number): { year: number; week: number } {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  const weekday = (date.getUTCDay() + 6) % 7; // Monday 0 … Sunday 6
  // The Thursday of the same week decides the week's year.
  date.setUTCDate(date.getUTCDate() + 3 - weekday);
  const weekYear = date.getUTCFullYear();
  const january1 = new Date(0);
  january1.setUTCFullYear(weekYear, 0, 1);
  const dayOfYear = Math.round((date.getTime() - january1.getTime()) / 86_400_000);
  return { year: weekYear, week: Math.floor(dayOfYear / 7) + 1 };
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** `2026-12-01 03:00:00 +01:00`: an instant as the zone's wall clock and offset. */
export function formatInZone(instant: number, timeZone?: string): string {
  const w = wallClock(instant, timeZone);
  const offsetMinutes = Math.round(zoneOffset(instant, timeZone) / 60_000);
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  return `${pad(w.year, 4)}-${pad(w.month)}-${pad(w.day)} ${pad(w.hour)}:${pad(w.minute)}:${pad(w.second)} ${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/**
 * `instant` moved back by whole years, months and days on the zone's calendar (the wall
 * clock stays, as Go's AddDate: 31 March minus a month is 3 March, or 2 March in a leap
 * year), then by `hours` of elapsed time.
 */
export function subtractCalendar(instant: number, amount: { years: number; months: number; days: number; hours: number }, timeZone?: string): number {
  let result = instant;
  if (amount.years !== 0 || amount.months !== 0 || amount.days !== 0) {
    const w = wallClock(instant, timeZone);
    const date = new Date(0);
    date.setUTCFullYear(w.year - amount.years, w.month - 1 - amount.months, w.day - amount.days);
    date.setUTCHours(w.hour, w.minute, w.second, w.millisecond);
    result = instantOfWall(date.getTime(), timeZone);
  }
  return result - amount.hours * 3_600_000;
}

const ISO_DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(Z|z|[+-]\d{2}(?::?\d{2})?)?)?$/;

/**
 * Parses an ISO 8601 date or date and time: `2026-05-01`, `2026-05-01T14:30`,
 * `2026-05-01T14:30:00.250Z`, `2026-05-01T14:30+02:00`. Without an offset it is a wall-clock
 * time in `timeZone` (default: local), a date alone its midnight. Throws a RangeError for
 * anything else, impossible dates (30 February) included.
 */
export function parseIsoDateTime(text: string, timeZone?: string): Date {
  const match = ISO_DATE_TIME.exec(text);
  if (!match) throw new RangeError(`"${text}" is not an ISO 8601 date and time, such as 2026-05-01T14:30:00Z or 2026-05-01`);
  const [, y, mo, d, h = '0', mi = '0', s = '0', fraction = '', offset] = match;
  const [year, month, day, hour, minute, second] = [y, mo, d, h, mi, s].map(Number) as [number, number, number, number, number, number];
  const daysInMonth = new Date(Date.UTC(2000, month, 0)).getUTCDate() - (month === 2 && !isLeapYear(year) ? 1 : 0);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 59) {
    throw new RangeError(`"${text}" is not a valid date and time`);
  }
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, Number(fraction.padEnd(3, '0').slice(0, 3)));
  const wallMs = date.getTime();
  if (offset === undefined) return new Date(instantOfWall(wallMs, timeZone));
  if (offset === 'Z' || offset === 'z') return new Date(wallMs);
  const [, sign, oh, om = '0'] = /^([+-])(\d{2}):?(\d{2})?$/.exec(offset)!;
  if (Number(oh) > 23 || Number(om) > 59) throw new RangeError(`"${text}" has an invalid offset ${offset}`);
  const offsetMs = (Number(oh) * 60 + Number(om)) * 60_000 * (sign === '-' ? -1 : 1);
  return new Date(wallMs - offsetMs);
}

function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}
