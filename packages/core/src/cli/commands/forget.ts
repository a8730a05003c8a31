import { ExitCode, UsageError } from '../../errors.js';
import { JobLoader } from '../../job/job-loader.js';
import { ForgetOperation, type ForgetEntry, type ForgetOptions, type ForgetResult } from '../../operations/forget.js';
import { formatInZone, isValidTimeZone } from '../../retention/calendar.js';
import { COUNT_RULES, describePolicy, parseGroupBy, parseRetentionDuration, type GroupKey, type RetentionPolicy } from '../../retention/policy.js';
import { defineCommand, withJob } from '../command.js';
import { listOf, parseTagFlags } from '../format.js';
import { PruneOperation } from '../../operations/prune.js';
import { DEFAULT_PRUNE, describePrune } from './prune.js';

/** The --keep-* count flags and the policy rule each sets. */
const COUNT_FLAGS = {
  'keep-last': 'keepLast',
  'keep-hourly': 'keepHourly',
  'keep-daily': 'keepDaily',
  'keep-weekly': 'keepWeekly',
  'keep-monthly': 'keepMonthly',
  'keep-yearly': 'keepYearly',
} as const satisfies Record<string, (typeof COUNT_RULES)[number]>;

const WHAT: Record<keyof typeof COUNT_FLAGS, string> = {
  'keep-last': 'Keep the N newest snapshots',
  'keep-hourly': 'Keep the newest snapshot of each of the last N hours that have snapshots',
  'keep-daily': 'Keep the newest snapshot of each of the last N days that have snapshots',
  'keep-weekly': 'Keep the newest snapshot of each of the last N ISO weeks (Monday to Sunday) that have snapshots',
  'keep-monthly': 'Keep the newest snapshot of each of the last N months that have snapshots',
  'keep-yearly': 'Keep the newest snapshot of each of the last N years that have snapshots',
};

export const forgetCommand = defineCommand({
  command: 'forget <job> [snapshots..]',
  describe: 'Apply the retention policy (flags, else the job\'s "retention"): keep snapshots by rule and remove the rest; or remove the snapshots named. Their data stays until prune',
  builder: (yargs) =>
    withJob(yargs)
      .positional('snapshots', { type: 'string', array: true, describe: 'Forget exactly these snapshots (ids, prefixes of 4+ hex digits, or latest) instead of applying a policy' })
      .option('keep-last', { type: 'string', describe: WHAT['keep-last'] })
      .option('keep-hourly', { type: 'string', describe: WHAT['keep-hourly'] })
      .option('keep-daily', { type: 'string', describe: WHAT['keep-daily'] })
      .option('keep-weekly', { type: 'string', describe: WHAT['keep-weekly'] })
      .option('keep-monthly', { type: 'string', describe: WHAT['keep-monthly'] })
      .option('keep-yearly', { type: 'string', describe: WHAT['keep-yearly'] })
      .option('keep-within', { type: 'string', describe: 'Keep every snapshot taken less than this long before the newest one: 30d, 12h, 2w, 6m, 1y6m (units h, d, w, m, y)' })
      .option('keep-tag', { type: 'string', describe: 'Keep every snapshot holding this tag (repeatable)' })
      .option('group-by', { type: 'string', default: 'host,job', describe: 'Apply the policy to each group of snapshots sharing these (comma list of host, job, paths, tags; empty: one group)' })
      .option('time-zone', { type: 'string', describe: 'IANA time zone the calendar rules count in (default: the job\'s retention.timeZone, else the local zone)' })
      .option('all-jobs', { type: 'boolean', default: false, describe: "Apply the policy to every snapshot in the repository, not only to this job's" })
      .option('dry-run', { type: 'boolean', default: false, describe: 'Print what would be kept and removed; remove nothing' })
      .option('prune', { type: 'boolean', default: false, describe: 'Then run `cairn prune` with its defaults, in the same run (with --dry-run: say what it would delete)' }),
  async run(args, { core, output }) {
    // Every flag is checked before the job file or the repository is touched.
    const options: ForgetOptions = {
      dryRun: args.dryRun,
      allJobs: args.allJobs,
      groupBy: parsedGroupBy(args.groupBy),
      snapshots: listOf(args.snapshots),
    };
    const policy = flagPolicy(args as unknown as Record<string, unknown>);
    if (policy) options.policy = policy;
    if (args.timeZone !== undefined) options.timeZone = checkedTimeZone(args.timeZone);
    const job = await core.get(JobLoader).load(args.job);
    const result = await core.get(ForgetOperation).run(job, options);
    if (!args.prune) {
      output.result(result, () => describeResult(result));
      return ExitCode.ok;
    }
    const pruned = await core.get(PruneOperation).run(job, { ...DEFAULT_PRUNE, dryRun: args.dryRun });
    output.result({ ...result, prune: pruned }, () => describeResult(result) + describePrune(pruned));
    return ExitCode.ok;
  },
});

/** The policy the --keep-* flags give, or undefined when none was given (then the job's applies). */
function flagPolicy(args: Record<string, unknown>): RetentionPolicy | undefined {
  const policy: RetentionPolicy = {};
  let given = false;
  for (const [flag, rule] of Object.entries(COUNT_FLAGS)) {
    const value = args[flag];
    if (value === undefined) continue;
    given = true;
    policy[rule] = checkedCount(value, `--${flag}`);
  }
  if (args['keep-within'] !== undefined) {
    given = true;
    const values = listOf(args['keep-within']);
    if (values.length !== 1) throw new UsageError(`--keep-within takes one duration, not ${values.length}`);
    try {
      parseRetentionDuration(values[0]!);
    } catch (err) {
      throw new UsageError(`--keep-within: ${(err as Error).message}`);
    }
    policy.keepWithin = values[0]!;
  }
  if (args['keep-tag'] !== undefined) {
    given = true;
    policy.keepTags = parseTagFlags(args['keep-tag'], '--keep-tag');
  }
  return given ? policy : undefined;
}

/** Counts are read as text (yargs would turn `abc` into NaN and a missing value into nothing at all). */
function checkedCount(value: unknown, flag: string): number {
  const values = listOf(value);
  if (values.length !== 1) throw new UsageError(`${flag} takes one number, not ${values.length}`);
  const count = /^[0-9]+$/.test(values[0]!) ? Number(values[0]) : NaN;
  if (!Number.isSafeInteger(count)) throw new UsageError(`${flag} must be a whole number of 0 or more, not ${JSON.stringify(values[0])}`);
  return count;
}

function parsedGroupBy(value: unknown) {
  const values = listOf(value);
  if (values.length !== 1) throw new UsageError(`--group-by takes one comma list, not ${values.length}`);
  try {
    return parseGroupBy(values[0]!);
  } catch (err) {
    throw new UsageError(`--group-by: ${(err as Error).message}`);
  }
}

function checkedTimeZone(value: unknown): string {
  const values = listOf(value);
  if (values.length !== 1 || !isValidTimeZone(values[0]!)) {
    throw new UsageError(`--time-zone: ${JSON.stringify(values.join(' '))} is not a time zone this system knows (an IANA name such as Europe/Berlin, or UTC)`);
  }
  return values[0]!;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

function describeKey(key: GroupKey): string {
  const parts: string[] = [];
  if (key.host !== undefined) parts.push(`host ${key.host}`);
  if (key.job !== undefined) parts.push(`job ${key.job}`);
  if (key.paths !== undefined) parts.push(`paths ${key.paths.join(', ')}`);
  if (key.tags !== undefined) parts.push(key.tags.length > 0 ? `tags ${key.tags.join(', ')}` : 'no tags');
  return parts.length > 0 ? parts.join(', ') : 'all snapshots';
}

function describeResult(result: ForgetResult): string {
  const lines: string[] = [];
  const zone = result.timeZone;
  lines.push(result.policy ? `Policy: ${describePolicy(result.policy)} (time zone ${zone})` : 'Forgetting the snapshots named');
  if (result.groups.every((g) => g.keep.length === 0 && g.remove.length === 0)) {
    lines.push('No snapshots to apply it to');
    return lines.join('\n') + '\n';
  }
  const entries = result.groups.flatMap((g) => [...g.keep, ...g.remove]);
  const hostWidth = Math.max(...entries.map((e) => e.host.length));
  const jobWidth = Math.max(...entries.map((e) => e.job.length));
  const row = (action: string, e: ForgetEntry, reasons: string) => {
    const tags = e.tags.length > 0 ? `  [${e.tags.join(', ')}]` : '';
    if (e.unreadable) return `  ${action.padEnd(6)}  ${e.id.slice(0, 12)}  (its manifest cannot be read)`;
    return `  ${action.padEnd(6)}  ${e.id.slice(0, 12)}  ${formatInZone(Date.parse(e.time), zone)}  ${e.host.padEnd(hostWidth)}  ${e.job.padEnd(jobWidth)}${tags}${reasons ? `  ${reasons}` : ''}`;
  };
  for (const group of result.groups) {
    lines.push('', result.policy ? `${describeKey(group.key)}: keep ${plural(group.keep.length, 'snapshot')}, remove ${group.remove.length}` : `remove ${plural(group.remove.length, 'snapshot')}`);
    for (const k of group.keep) lines.push(row('keep', k, k.reasons.join(', ')));
    for (const r of group.remove) lines.push(row('remove', r, ''));
  }
  const toRemove = result.groups.reduce((n, g) => n + g.remove.length, 0);
  lines.push('');
  if (result.dryRun) lines.push(`Dry run: ${plural(toRemove, 'snapshot')} would be removed; nothing was removed.`);
  else if (result.removed.length > 0) lines.push(`Removed ${plural(result.removed.length, 'snapshot')}. Their data stays in the repository until cairn prune removes it.`);
  else lines.push('Nothing to remove.');
  return lines.join('\n') + '\n';
}
