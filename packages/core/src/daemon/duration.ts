/** Milliseconds per unit of the durations job files and flags use for times of day and timeouts. */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** What a job file's duration strings must look like (JSON schema `pattern`). */
export const DURATION_PATTERN = '^([0-9]+(ms|s|m|h|d))+$';

/**
 * Parses `90s`, `10m`, `6h`, `1d`, `1h30m` or `250ms` into milliseconds; throws a RangeError
 * saying what is wrong. (Retention's `keepWithin` has calendar units, months and years, and its
 * own parser.)
 */
export function parseDurationMs(text: string): number {
  const what = `"${text}" is not a duration such as 30s, 10m, 6h, 1d or 1h30m (units ms, s, m, h, d)`;
  if (!new RegExp(DURATION_PATTERN).test(text)) throw new RangeError(what);
  let total = 0;
  for (const [, digits, unit] of text.matchAll(/([0-9]+)(ms|s|m|h|d)/g)) total += Number(digits) * UNIT_MS[unit!]!;
  if (!Number.isSafeInteger(total)) throw new RangeError(`${what}: it is too long`);
  return total;
}

/** `5400000` → `1h30m`: the shortest form `parseDurationMs` reads back. */
export function formatDurationMs(ms: number): string {
  if (ms === 0) return '0s';
  let rest = ms;
  let text = '';
  for (const unit of ['d', 'h', 'm', 's', 'ms']) {
    const size = UNIT_MS[unit]!;
    const count = Math.floor(rest / size);
    if (count > 0) text += `${count}${unit}`;
    rest -= count * size;
  }
  return text;
}
