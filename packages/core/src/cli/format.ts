import { UsageError } from '../errors.js';
import { parseIsoDateTime } from '../retention/calendar.js';
import { tagProblem } from '../retention/policy.js';

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** `1073741824`, `512M`, `20G`, `1.5T` (binary units). */
export function parseSize(text: string, flag = '--size'): number {
  if (text.trim().startsWith('-')) throw new UsageError(`${flag} must be a positive number of bytes, optionally with K, M, G or T: not "${text}"`);
  const match = /^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$/i.exec(text.trim());
  if (!match) throw new UsageError(`${flag} must be a number of bytes, optionally with K, M, G or T: not "${text}"`);
  const factor = 1024 ** ' KMGT'.indexOf((match[2] || ' ').toUpperCase());
  return Math.round(Number(match[1]) * factor);
}

/** A flag's value as the list yargs gives for a repeatable option (one value, several, or none). */
export function listOf(value: unknown): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).map((v) => String(v));
}

/** `--time`: an ISO 8601 date and time; without an offset, local time. */
export function parseTimeFlag(value: unknown, flag: string): Date {
  const text = listOf(value);
  if (text.length !== 1) throw new UsageError(`${flag} takes one time, not ${text.length}`);
  try {
    return parseIsoDateTime(text[0]!);
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}

/** Repeatable `--tag`-style flags: each a non-empty tag without commas; duplicates dropped, order kept. */
export function parseTagFlags(value: unknown, flag: string): string[] {
  const tags = listOf(value);
  for (const tag of tags) {
    const problem = tagProblem(tag);
    if (problem) throw new UsageError(`${flag}: ${problem}`);
  }
  return [...new Set(tags)];
}

/** `90s`, `30m`, `2h`, or a number of seconds. */
export function parseWait(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([smh]?)$/.exec(text.trim());
  if (!match) throw new UsageError(`${flag} must be a duration such as 90s, 30m or 2h: not "${text}"`);
  return Math.round(Number(match[1]) * 1000 * { '': 1, s: 1, m: 60, h: 3600 }[match[2] as '' | 's' | 'm' | 'h']);
}

/** Byte ranges of an image as text: `4.0 MiB in 2 range(s): 0+1048576, 16777216+3145728` (offset+length in bytes), the first few of many. */
export function formatRanges(ranges: ReadonlyArray<{ offset: number; length: number }>, shown = 8): string {
  const total = ranges.reduce((n, r) => n + r.length, 0);
  const listed = ranges.slice(0, shown).map((r) => `${r.offset}+${r.length}`);
  if (ranges.length > shown) listed.push(`… (${ranges.length - shown} more; --json lists all)`);
  return `${formatBytes(total)} in ${ranges.length} range(s): ${listed.join(', ')}`;
}
