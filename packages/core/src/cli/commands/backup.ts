import { ExitCode } from '../../errors.js';
import { JobLoader } from '../../job/job-loader.js';
import { BackupOperation } from '../../operations/backup.js';
import { defineCommand, withJob } from '../command.js';
import { exitCodeOf } from '../output.js';
import { formatBytes, parseTagFlags, parseTimeFlag } from '../format.js';
import { isFileManifest, isIncompleteSnapshot, type SnapshotManifest } from '../../repository/snapshot.js';
import type { BackupResult } from '../../pipeline/backup.js';
import type { FileBackupResult } from '../../files/file-backup.js';
import { RetentionTap, type RetentionApplied } from '../../retention/retention-tap.js';

export const backupCommand = defineCommand({
  command: 'backup <job>',
  describe: 'Run the job once: image the volume, or back up the files, into the repository',
  builder: (yargs) =>
    withJob(yargs)
      .option('time', { type: 'string', describe: 'Record this time (ISO 8601, e.g. 2026-05-01T02:00:00Z; local time without an offset) instead of now: for imports and tests' })
      .option('tag', { type: 'string', describe: 'Add a tag to the snapshot (repeatable; no commas)' })
      .option('rescue', {
        type: 'boolean',
        default: false,
        describe: 'Image around unreadable sectors of the source: store them as zeros and list them in the snapshot (exit code 3) instead of stopping',
      })
      .option('forget', {
        type: 'boolean',
        default: false,
        describe: 'Then apply the job\'s "retention" as `cairn forget <job>` does (not after an incomplete snapshot); its data stays until prune',
      }),
  async run(args, { core, output }) {
    // Flags are checked before anything else is touched.
    const options = {
      ...(args.time !== undefined && { time: parseTimeFlag(args.time, '--time') }),
      ...(args.tag !== undefined && { tags: parseTagFlags(args.tag, '--tag') }),
    };
    const job = await core.get(JobLoader).load(args.job);
    const { result, tapFailures, run } = await core.get(BackupOperation).run(job, { ...options, rescue: args.rescue, forget: args.forget });
    const forget = core.get(RetentionTap).appliedTo(run);
    const manifest = result.manifest;
    if (isFileManifest(manifest)) output.result(fileBackupJson(result as FileBackupResult, forget), () => describeFileBackup(result as FileBackupResult) + (forget ? describeRetention(forget) : ''));
    else output.result(volumeBackupJson(result as BackupResult, forget), () => describeVolumeBackup(result as BackupResult) + (forget ? describeRetention(forget) : ''));
    // The snapshot stands, but lacks what could not be read: a script must not take it for a full one.
    if (isIncompleteSnapshot(manifest) && tapFailures.length === 0) return ExitCode.incomplete;
    return exitCodeOf(tapFailures);
  },
});

function volumeBackupJson({ manifest, snapshot, bytesRead, bytesAdded }: BackupResult, forget: RetentionApplied | undefined): object {
  const { stats } = manifest;
  return {
    snapshot,
    time: manifest.time,
    tags: manifest.tags ?? [],
    size: manifest.size,
    bytesRead,
    bytesAdded,
    chunks: { data: stats.dataChunks, new: stats.newChunks, zero: stats.zeroChunks, unused: stats.unusedChunks },
    durationMs: stats.durationMs,
    imageDigest: manifest.imageDigest,
    ...(manifest.unreadable && { unreadable: manifest.unreadable }),
    ...(forget && { forget }),
  };
}

function describeVolumeBackup({ manifest, snapshot, bytesRead, bytesAdded }: BackupResult): string {
  const { stats } = manifest;
  return (
    `Snapshot ${snapshot.slice(0, 12)} saved${incompleteNote(manifest.unreadable)}: read ${formatBytes(bytesRead)} of ${formatBytes(manifest.size)}, ` +
    `added ${formatBytes(bytesAdded)} to the repository (${stats.newChunks} new of ${stats.dataChunks} data chunks) in ${(stats.durationMs / 1000).toFixed(1)} s\n`
  );
}

function fileBackupJson({ manifest, snapshot, bytesRead, bytesAdded }: FileBackupResult, forget: RetentionApplied | undefined): object {
  return {
    snapshot,
    kind: 'files',
    time: manifest.time,
    tags: manifest.tags ?? [],
    paths: manifest.paths,
    ...(manifest.parent && { parent: manifest.parent }),
    bytesRead,
    bytesAdded,
    stats: manifest.stats,
    skipped: manifest.skipped ?? [],
    skippedCount: manifest.skippedCount ?? manifest.skipped?.length ?? 0,
    ...(forget && { forget }),
  };
}

/** Skipped paths named in the summary; `cairn show` lists them all. */
const SKIPPED_IN_SUMMARY = 5;

function describeFileBackup({ manifest, snapshot, bytesRead, bytesAdded }: FileBackupResult): string {
  const { stats } = manifest;
  const skippedCount = manifest.skippedCount ?? manifest.skipped?.length ?? 0;
  const lines = [
    `Snapshot ${snapshot.slice(0, 12)} saved${skippedCount > 0 ? ` incomplete (${skippedCount} path(s) could not be read)` : ''}: ` +
      `${stats.files} files, ${stats.dirs} folders, ${stats.others} other entries, ${formatBytes(stats.totalBytes)} in files`,
    `Read ${formatBytes(bytesRead)} (${stats.unchangedFiles} unchanged files not read again${manifest.parent ? ` since ${manifest.parent.slice(0, 12)}` : ''}), ` +
      `added ${formatBytes(bytesAdded)} to the repository (${stats.newChunks} new of ${stats.dataChunks} data chunks) in ${(stats.durationMs / 1000).toFixed(1)} s`,
  ];
  if (stats.changedWhileRead > 0) lines.push(`${stats.changedWhileRead} file(s) changed while they were read (marked as changed in the snapshot)`);
  for (const skipped of (manifest.skipped ?? []).slice(0, SKIPPED_IN_SUMMARY)) lines.push(`  not backed up: ${skipped.path}: ${skipped.reason}`);
  if (skippedCount > SKIPPED_IN_SUMMARY) lines.push(`  and ${skippedCount - SKIPPED_IN_SUMMARY} more (\`cairn show ${snapshot.slice(0, 12)}\` lists them)`);
  return lines.join('\n') + '\n';
}

function describeRetention(applied: RetentionApplied): string {
  const removed = applied.removed.length === 0 ? 'removed none' : `removed ${applied.removed.length}: ${applied.removed.map((id) => id.slice(0, 12)).join(', ')}`;
  return `Retention: kept ${applied.kept} snapshot(s), ${removed}\n`;
}

function incompleteNote(unreadable: SnapshotManifest['unreadable']): string {
  if (!unreadable) return '';
  return ` incomplete (${formatBytes(unreadable.reduce((sum, r) => sum + r.length, 0))} in ${unreadable.length} unreadable range(s) stored as zeros)`;
}
