import { UsageError } from '../errors.js';

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
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$/i.exec(text.trim());
  if (!match) throw new UsageError(`--size must be a number of bytes, optionally with K, M, G or T: not "${text}"`);
  const factor = 1024 ** ' KMGT'.indexOf((match[2] || ' ').toUpperCase());
  return Math.round(Number(match[1]) * factor);
}

/** Byte ranges of an image as text: `4.0 MiB in 2 range(s): 0+1048576, 16777216+3145728` (offset+length in bytes), the first few of many. */
export function formatRanges(ranges: ReadonlyArray<{ offset: number; length: number }>, shown = 8): string {
  const total = ranges.reduce((n, r) => n + r.length, 0);
  const listed = ranges.slice(0, shown).map((r) => `${r.offset}+${r.length}`);
  if (ranges.length > shown) listed.push(`… (${ranges.length - shown} more; --json lists all)`);
  return `${formatBytes(total)} in ${ranges.length} range(s): ${listed.join(', ')}`;
}
