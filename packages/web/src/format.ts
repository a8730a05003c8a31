/** Sizes, times and spans as a person reads them. */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function formatBytes(bytes: number | undefined): string {
  if (bytes === undefined || !Number.isFinite(bytes)) return '–';
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${UNITS[unit]}`;
}

/** A length of time in its two largest units: `850 ms`, `42 s`, `4 min 12 s`, `3 h 5 min`. */
export function formatSpan(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const units: Array<[string, number]> = [['d', 86_400], ['h', 3_600], ['min', 60], ['s', 1]];
  let rest = Math.round(ms / 1000);
  const parts: string[] = [];
  for (const [name, seconds] of units) {
    if (rest >= seconds || (parts.length > 0 && parts.length < 2)) {
      const n = Math.floor(rest / seconds);
      rest -= n * seconds;
      if (n > 0 || parts.length > 0) parts.push(`${n} ${name}`);
    }
    if (parts.length === 2) break;
  }
  return parts.join(' ');
}

/** `in 3 h 5 min`, `4 min ago`, `now`. */
export function formatRelative(iso: string | undefined, now = Date.now()): string {
  if (!iso) return '–';
  const time = Date.parse(iso);
  if (Number.isNaN(time)) return iso;
  const offset = time - now;
  if (Math.abs(offset) < 1000) return 'now';
  return offset > 0 ? `in ${formatSpan(offset)}` : `${formatSpan(-offset)} ago`;
}

/** A local date and time to the minute: `2026-12-02 01:15`. */
export function formatTime(iso: string | undefined): string {
  if (!iso) return '–';
  const time = new Date(iso);
  if (Number.isNaN(time.getTime())) return iso;
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${time.getFullYear()}-${pad(time.getMonth() + 1)}-${pad(time.getDate())} ${pad(time.getHours())}:${pad(time.getMinutes())}:${pad(time.getSeconds())}`;
}

export function formatRate(bytesPerSecond: number | undefined): string {
  return bytesPerSecond === undefined ? '–' : `${formatBytes(bytesPerSecond)}/s`;
}

export function shortId(id: string): string {
  return id.slice(0, 8);
}
