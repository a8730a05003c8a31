import { ExitCode, UsageError } from '../../errors.js';
import { JobLoader } from '../../job/job-loader.js';
import { PruneOperation, type PruneResult } from '../../operations/prune.js';
import { defineCommand, withJob } from '../command.js';
import { formatBytes, parseSize, parseWait } from '../format.js';

/** What `prune` does without flags (and `forget --prune`). */
export const DEFAULT_PRUNE = { repackThreshold: 0.5, maxRepackBytes: Infinity, maxWaitMs: 60 * 60 * 1000 };

export const pruneCommand = defineCommand({
  command: 'prune <job>',
  describe: 'Delete data that no snapshot needs (after forget), and repack mostly unused packs',
  builder: (yargs) =>
    withJob(yargs)
      .option('dry-run', { type: 'boolean', default: false, describe: 'Say what would be deleted and repacked; change nothing' })
      .option('repack-threshold', { type: 'number', default: 50, describe: 'Repack a pack when at least this percentage of its bytes is unused' })
      .option('max-repack-size', { type: 'string', describe: 'Copy at most this many bytes while repacking (K/M/G/T suffixes); the rest waits for the next prune' })
      .option('max-wait', { type: 'string', default: '1h', describe: 'Wait at most this long (e.g. 30m) for operations that started before the prune to finish; what they might use is deleted by the next prune' }),
  async run(args, { core, output }) {
    const job = await core.get(JobLoader).load(args.job);
    const threshold = args.repackThreshold;
    if (!(threshold >= 0 && threshold <= 100)) throw new UsageError(`--repack-threshold must be a percentage from 0 to 100, not ${threshold}`);
    const result = await core.get(PruneOperation).run(job, {
      dryRun: args.dryRun,
      repackThreshold: threshold / 100,
      maxRepackBytes: args.maxRepackSize === undefined ? Infinity : parseSize(args.maxRepackSize, '--max-repack-size'),
      maxWaitMs: parseWait(args.maxWait, '--max-wait'),
    });
    output.result(result, () => describePrune(result));
    return ExitCode.ok;
  },
});

export function describePrune(r: PruneResult): string {
  const { packs } = r;
  const lines = [
    `${r.snapshots} snapshot(s), ${packs.stored} pack(s): ${packs.unused} unused, ${packs.orphans} left by interrupted backups, ${packs.repacked} to repack, ${packs.kept} kept`,
  ];
  if (r.dryRun) {
    lines.push(`Would delete ${formatBytes(r.bytesDeleted)} and copy ${formatBytes(r.bytesWritten)} (dry run: nothing changed)`);
    return lines.join('\n') + '\n';
  }
  lines.push(`Deleted ${formatBytes(r.bytesDeleted)}, wrote ${formatBytes(r.bytesWritten)} of repacked data: ${formatBytes(r.bytesFreed)} freed`);
  lines.push(`Index files: ${r.indexFiles.before} before, ${r.indexFiles.after} after`);
  if (r.keptAfterAll) lines.push(`${r.keptAfterAll} marked pack(s) kept: snapshots written meanwhile need them`);
  if (r.postponedPacks) lines.push(`${r.postponedPacks} pack(s) stay marked: operations that started before this prune are still running; the next prune deletes what they do not need`);
  if (r.staleLocksRemoved || r.leftoversRemoved) lines.push(`Removed ${r.staleLocksRemoved} stale lock(s) and ${r.leftoversRemoved} leftover(s) of interrupted runs`);
  return lines.join('\n') + '\n';
}
