import { isValidTimeZone, isoWeek, localTimeZone, subtractCalendar, wallClock, type WallClock } from './calendar.js';

/**
 * Which snapshots a retention policy keeps, with restic's semantics (which users know):
 * snapshots are taken newest first; `keepLast` N keeps the N newest; `keepHourly` …
 * `keepYearly` N keep the newest snapshot of each of the N newest hours, days, ISO weeks,
 * months or years that have snapshots; `keepWithin` keeps every snapshot taken less than
 * that long before the newest one; `keepTags` keeps every snapshot holding one of the tags.
 * A snapshot is kept when any rule keeps it, and lists every rule that did. Calendar
 * buckets are read on the wall clock of one time zone (default: the local one).
 *
 * Pure: no I/O, no clock. The `forget` operation groups the snapshots and calls this per group.
 */
export interface RetentionPolicy {
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  /** A duration such as `30d` or `1y6m`: units h, d, w (7 days), m, y. */
  keepWithin?: string;
  keepTags?: string[];
}

/** The job file's `retention`: a policy and the time zone its calendar rules use. */
export interface RetentionSettings extends RetentionPolicy {
  /** IANA name, e.g. `Europe/Berlin`; default: the local zone. */
  timeZone?: string;
}

/** What the policy needs to know of a snapshot. `time` is ISO 8601 (as in manifests) or a Date. */
export interface RetentionCandidate {
  id: string;
  time: string | Date;
  tags?: readonly string[];
}

export interface KeptSnapshot<T> {
  snapshot: T;
  /** Every rule that keeps it, e.g. `last 1`, `daily 3` (the third day kept), `within 30d`, `tag monthly`. */
  reasons: string[];
}

export interface RetentionDecision<T> {
  /** Newest first. */
  keep: Array<KeptSnapshot<T>>;
  /** Newest first. */
  remove: T[];
}

export const COUNT_RULES = ['keepLast', 'keepHourly', 'keepDaily', 'keepWeekly', 'keepMonthly', 'keepYearly'] as const;
export type CountRule = (typeof COUNT_RULES)[number];

/** The word a rule's reasons start with. */
const RULE_WORD: Record<CountRule, string> = { keepLast: 'last', keepHourly: 'hourly', keepDaily: 'daily', keepWeekly: 'weekly', keepMonthly: 'monthly', keepYearly: 'yearly' };

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** The bucket of a snapshot for a calendar rule, from its wall clock; `keepLast` puts each snapshot in its own. */
const BUCKET: Record<CountRule, (w: WallClock, position: number) => string> = {
  keepLast: (_w, position) => String(position),
  keepHourly: (w) => `${pad(w.year, 4)}-${pad(w.month)}-${pad(w.day)}T${pad(w.hour)}`,
  keepDaily: (w) => `${pad(w.year, 4)}-${pad(w.month)}-${pad(w.day)}`,
  keepWeekly: (w) => {
    const { year, week } = isoWeek(w.year, w.month, w.day);
    return `${pad(year, 4)}-W${pad(week)}`;
  },
  keepMonthly: (w) => `${pad(w.year, 4)}-${pad(w.month)}`,
  keepYearly: (w) => pad(w.year, 4),
};

/** A `keepWithin` duration. Weeks are counted as 7 days. */
export interface RetentionDuration {
  years: number;
  months: number;
  days: number;
  hours: number;
}

const DURATION_UNITS: Record<string, keyof RetentionDuration | 'weeks'> = { y: 'years', m: 'months', w: 'weeks', d: 'days', h: 'hours' };

/** Parses `30d`, `1y6m`, `2w`, `12h`; throws a RangeError saying what is wrong. */
export function parseRetentionDuration(text: string): RetentionDuration {
  const duration: RetentionDuration = { years: 0, months: 0, days: 0, hours: 0 };
  const seen = new Set<string>();
  const what = `"${text}" is not a duration such as 30d, 12h, 2w, 6m or 1y6m (units h, d, w, m, y)`;
  if (!/^(?:[0-9]+[ymwdh])+$/.test(text)) throw new RangeError(what);
  let total = 0;
  for (const [, digits, unit] of text.matchAll(/([0-9]+)([ymwdh])/g)) {
    if (seen.has(unit!)) throw new RangeError(`${what}: the unit ${unit} appears twice`);
    seen.add(unit!);
    const value = Number(digits);
    if (!Number.isSafeInteger(value) || value > 1_000_000) throw new RangeError(`${what}: ${digits} is too large`);
    total += value;
    const field = DURATION_UNITS[unit!]!;
    if (field === 'weeks') duration.days += value * 7;
    else duration[field] += value;
  }
  if (total === 0) throw new RangeError(`${what}: it must be longer than zero`);
  return duration;
}

/** True when the policy would keep nothing at all (no rule set): `forget` refuses to apply it. */
export function isEmptyPolicy(policy: RetentionPolicy): boolean {
  return COUNT_RULES.every((rule) => !policy[rule]) && !policy.keepWithin && !(policy.keepTags && policy.keepTags.length > 0);
}

/** Problems with a policy, as `keepWithin: …` lines; empty when it is usable. The schema checks types; this checks meaning. */
export function retentionProblems(settings: RetentionSettings): string[] {
  const problems: string[] = [];
  for (const rule of COUNT_RULES) {
    const value = settings[rule];
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) problems.push(`${rule}: must be a whole number of 0 or more, not ${value}`);
  }
  if (settings.keepWithin !== undefined) {
    try {
      parseRetentionDuration(settings.keepWithin);
    } catch (err) {
      problems.push(`keepWithin: ${(err as Error).message}`);
    }
  }
  for (const tag of settings.keepTags ?? []) {
    const problem = tagProblem(tag);
    if (problem) problems.push(`keepTags: ${problem}`);
  }
  if (settings.timeZone !== undefined && !isValidTimeZone(settings.timeZone)) {
    problems.push(`timeZone: "${settings.timeZone}" is not a time zone this system knows (an IANA name such as Europe/Berlin, or UTC)`);
  }
  return problems;
}

/** Why `tag` cannot be a snapshot tag, or undefined when it can: tags are non-empty, without commas or control characters. */
export function tagProblem(tag: string): string | undefined {
  if (tag.length === 0) return 'a tag must not be empty';
  if (tag.includes(',')) return `"${tag}" holds a comma, which separates tags in lists`;
  if (/[\u0000-\u001f\u007f]/.test(tag)) return `${JSON.stringify(tag)} holds a control character`;
  if (tag.length > 200) return `a tag must be at most 200 characters long`;
  return undefined;
}

/** `keep last 3, daily 7, within 30d, tags a, b` */
export function describePolicy(policy: RetentionPolicy): string {
  const parts: string[] = [];
  for (const rule of COUNT_RULES) if (policy[rule]) parts.push(`${RULE_WORD[rule]} ${policy[rule]}`);
  if (policy.keepWithin) parts.push(`within ${policy.keepWithin}`);
  if (policy.keepTags && policy.keepTags.length > 0) parts.push(`tags ${policy.keepTags.join(', ')}`);
  return `keep ${parts.join(', ')}`;
}

/** Time in ms of a candidate; NaN when it is not a time. */
function timeOf(candidate: RetentionCandidate): number {
  return candidate.time instanceof Date ? candidate.time.getTime() : Date.parse(candidate.time);
}

/**
 * Applies `policy` to one group of snapshots. Every snapshot ends up in `keep` or `remove`;
 * one whose time cannot be read is kept (never delete what cannot be placed). Ties in time
 * are broken by id, so the result does not depend on the input's order.
 */
export function applyRetention<T extends RetentionCandidate>(snapshots: readonly T[], policy: RetentionPolicy, options: { timeZone?: string } = {}): RetentionDecision<T> {
  // Resolved once: every calendar question below is asked in the same zone.
  const timeZone = options.timeZone ?? localTimeZone();
  const within = policy.keepWithin ? parseRetentionDuration(policy.keepWithin) : undefined;
  const dated = snapshots.map((snapshot) => ({ snapshot, time: timeOf(snapshot) }));
  const undated = dated.filter((d) => Number.isNaN(d.time));
  const sorted = dated.filter((d) => !Number.isNaN(d.time)).sort((a, b) => b.time - a.time || (a.snapshot.id < b.snapshot.id ? 1 : a.snapshot.id > b.snapshot.id ? -1 : 0));

  const rules = COUNT_RULES.filter((rule) => (policy[rule] ?? 0) > 0).map((rule) => ({ rule, count: policy[rule]!, kept: 0, lastBucket: undefined as string | undefined }));
  const cutoff = within && sorted.length > 0 ? subtractCalendar(sorted[0]!.time, within, timeZone) : undefined;

  const keep: Array<KeptSnapshot<T>> = [];
  const remove: T[] = [];
  for (const [position, { snapshot, time }] of sorted.entries()) {
    const reasons: string[] = [];
    const wall = rules.length > 0 ? wallClock(time, timeZone) : undefined;
    for (const state of rules) {
      if (state.kept >= state.count) continue;
      const bucket = BUCKET[state.rule](wall!, position);
      if (bucket === state.lastBucket) continue;
      state.lastBucket = bucket;
      state.kept++;
      reasons.push(`${RULE_WORD[state.rule]} ${state.kept}`);
    }
    // restic's rule: strictly after the newest snapshot's time minus the duration.
    if (cutoff !== undefined && time > cutoff) reasons.push(`within ${policy.keepWithin}`);
    for (const tag of policy.keepTags ?? []) if (snapshot.tags?.includes(tag)) reasons.push(`tag ${tag}`);
    if (reasons.length > 0) keep.push({ snapshot, reasons });
    else remove.push(snapshot);
  }
  for (const { snapshot } of undated) keep.push({ snapshot, reasons: ['time unreadable'] });
  return { keep, remove };
}

/**
 * What snapshots are grouped by before the policy is applied to each group. `paths` is what a
 * snapshot backed up: a file snapshot's paths, a volume snapshot's device or image. The
 * default is host and job, not paths as restic's: a job whose paths were edited stays one
 * history, so its older snapshots still expire (grouped by paths they would each keep their own).
 */
export type GroupField = 'host' | 'job' | 'paths' | 'tags';
export const GROUP_FIELDS: readonly GroupField[] = ['host', 'job', 'paths', 'tags'];

export interface GroupKey {
  host?: string;
  job?: string;
  /** Sorted. */
  paths?: string[];
  tags?: string[];
}

/** Parses `host,job` (the default), `host`, `job,tags`, or `` (one group for everything). */
export function parseGroupBy(text: string): GroupField[] {
  const fields = text
    .split(',')
    .map((f) => f.trim())
    .filter((f) => f.length > 0);
  for (const field of fields) {
    if (!GROUP_FIELDS.includes(field as GroupField)) throw new RangeError(`"${field}" is not something to group by (host, job, paths or tags, comma-separated)`);
  }
  return GROUP_FIELDS.filter((f) => fields.includes(f));
}

/** Splits snapshots into groups with the same key, in a stable order (by key). */
export function groupSnapshots<T>(snapshots: readonly T[], by: readonly GroupField[], facts: (snapshot: T) => { host: string; job: string; paths?: readonly string[]; tags?: readonly string[] }): Array<{ key: GroupKey; snapshots: T[] }> {
  const groups = new Map<string, { key: GroupKey; snapshots: T[] }>();
  for (const snapshot of snapshots) {
    const f = facts(snapshot);
    const key: GroupKey = {};
    if (by.includes('host')) key.host = f.host;
    if (by.includes('job')) key.job = f.job;
    if (by.includes('paths')) key.paths = [...new Set(f.paths ?? [])].sort();
    if (by.includes('tags')) key.tags = [...new Set(f.tags ?? [])].sort();
    const text = JSON.stringify([key.host, key.job, key.paths, key.tags]);
    let group = groups.get(text);
    if (!group) groups.set(text, (group = { key, snapshots: [] }));
    group.snapshots.push(snapshot);
  }
  return [...groups.values()].sort((a, b) => compareKeys(a.key, b.key));
}

function compareKeys(a: GroupKey, b: GroupKey): number {
  const text = (k: GroupKey) => [k.host ?? '', k.job ?? '', (k.paths ?? []).join('\0'), (k.tags ?? []).join(',')];
  const [x, y] = [text(a), text(b)];
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i]! < y[i]! ? -1 : 1;
  return 0;
}
