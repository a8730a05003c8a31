import { ExitCode, UsageError } from '../../errors.js';
import type { ResizedPartition } from '../../hooks.js';
import { JobLoader } from '../../job/job-loader.js';
import { RestoreOperation, type RestoreResult } from '../../operations/restore.js';
import type { FileRestoreResult } from '../../operations/file-restore.js';
import { OVERWRITE_MODES, type OverwriteMode } from '../../files/file-restore.js';
import { defineCommand, withJob, withSnapshot } from '../command.js';
import { exitCodeOf } from '../output.js';
import { formatBytes, formatRanges, parseSize } from '../format.js';

export const restoreCommand = defineCommand({
  command: 'restore <job> <snapshot>',
  describe: 'Restore a snapshot (an id, a prefix of one, or latest): an image to a file or block device, a file snapshot into a folder',
  builder: (yargs) =>
    withSnapshot(withJob(yargs))
      .option('to', { type: 'string', demandOption: true, describe: 'Image file or block device to write; for a file snapshot, the folder to restore into (paths keep their full snapshot path below it)' })
      .option('include', { type: 'string', array: true, describe: 'File snapshot: restore only paths matching this gitignore-style pattern (repeatable; a folder brings everything below it)' })
      .option('exclude', { type: 'string', array: true, describe: 'File snapshot: leave out paths matching this pattern (repeatable)' })
      .option('overwrite', { type: 'string', choices: OVERWRITE_MODES, describe: 'File snapshot: what happens to existing files: always, if-changed (default: keep a file whose size, mtime and content are the snapshot\'s), never' })
      .option('verify', { type: 'boolean', describe: 'File snapshot: read every restored file back and compare it with the snapshot (exit 13 on a difference)' })
      .option('force', { type: 'boolean', default: false, describe: 'Overwrite an existing file or device' })
      .option('partition', { type: 'number', describe: 'Restore only this partition (its number, as in /dev/sda2) of a disk snapshot' })
      .option('delta', {
        type: 'boolean',
        default: true,
        describe: 'Onto a block device, or an existing image file of the same size (with --force): read it first and fetch and write only the chunks that differ (--no-delta: write everything; a file is then written under a temporary name and replaced only when complete)',
      })
      .option('zero-unused', { type: 'boolean', default: false, describe: 'On a block device, write zeros over unused blocks instead of leaving them as they are' })
      .option('size', {
        type: 'string',
        // Takes the next word whatever it looks like: `--size -5G` would otherwise read as the flags -5 and -G.
        requiresArg: true,
        describe: 'Make the restored image file this large (bytes, or with K/M/G/T suffix): larger, a bigger virtual disk (a GPT is moved to the new end); smaller, the image is shrunk to fit (see --shrink)',
      })
      .option('grow', {
        type: 'string',
        describe: 'On a larger disk (a larger device, or --size), extend the last partition (or partition N: --grow N) and grow its filesystem to fill it (ext2/3/4, XFS, Btrfs, NTFS)',
      })
      .option('shrink', {
        type: 'string',
        describe: 'Fit the image into a smaller disk by shrinking a filesystem (ext2/3/4, Btrfs, NTFS; partition N: --shrink N) in a staging file first; automatic when the device or --size is smaller than the image; to a file without --size: as small as the data allows',
      })
      .option('staging-dir', { type: 'string', describe: 'Folder for the sparse staging file of a shrink (about the used data; default: the system temporary folder)' })
      .option('ignore-damage', {
        type: 'boolean',
        default: false,
        describe: 'Where data is lost (a missing or damaged pack, a blob no index names), write zeros and go on; lists the ranges and exits 13',
      }),
  async run(args, { core, output }) {
    // An empty path would resolve to the working folder.
    if (args.to.trim() === '') throw new UsageError('--to needs the image file or block device to restore to, not an empty path');
    const options = {
      force: args.force,
      zeroUnused: args.zeroUnused,
      ignoreDamage: args.ignoreDamage,
      delta: args.delta,
      ...(args.partition !== undefined && { partition: checkedPartition(args.partition) }),
      ...(args.size !== undefined && { size: parseSize(args.size) }),
      ...(args.grow !== undefined && { grow: optionalPartition('--grow', args.grow) }),
      ...(args.shrink !== undefined && { shrink: optionalPartition('--shrink', args.shrink) }),
      ...(args.stagingDir !== undefined && { stagingDir: args.stagingDir }),
    };
    const job = await core.get(JobLoader).load(args.job);
    const files = {
      ...(args.include && { include: args.include }),
      ...(args.exclude && { exclude: args.exclude }),
      ...(args.overwrite !== undefined && { overwrite: args.overwrite as OverwriteMode }),
      ...(args.verify && { verify: true }),
    };
    const { result, tapFailures } = await core.get(RestoreOperation).run(job, args.snapshot, args.to, options, files);
    if ('kind' in result) {
      output.result(result, () => describeFileResult(result));
      if (result.verified?.mismatches.length) return ExitCode.damage;
      return exitCodeOf(tapFailures);
    }
    output.result(result, () => describeResult(result));
    // Zeros written for data lost now: the file is there, and scripts must notice.
    if (result.damage?.length) return ExitCode.damage;
    return exitCodeOf(tapFailures);
  },
});

function describeResult(result: RestoreResult): string {
  const what = result.partition === undefined ? 'snapshot' : `partition ${result.partition} of snapshot`;
  const lines = [`Restored ${what} ${result.snapshot.slice(0, 12)} to ${result.destination}: ${describeTransfer(result)}; ${describeVerified(result)}`];
  for (const r of result.resized ?? []) lines.push(describeResized(r));
  for (const damage of result.damage ?? []) lines.push(`DAMAGE ${damage.object}: ${damage.message}; zeros written for ${formatRanges(damage.ranges)}`);
  if (result.repairedFrom) lines.push(`This snapshot was repaired (from ${result.repairedFrom.slice(0, 12)}): zeros stand in for the data it lost`);
  if (result.lost) lines.push(`Zeros stand in for lost data at ${formatRanges(result.lost)} (offsets in ${result.destination})`);
  return lines.join('\n') + '\n';
}

function describeTransfer(result: RestoreResult): string {
  const written = `${formatBytes(result.bytesWritten)} written, ${formatBytes(result.bytesFetched)} fetched`;
  if (!result.delta) return written;
  const zeroed = result.bytesZeroed ? `, ${formatBytes(result.bytesZeroed)} made zeros in place` : '';
  return `${written}${zeroed}, ${formatBytes(result.bytesUnchanged ?? 0)} already there (delta)`;
}

/** Exactly what the check covered: the image as written, and what a digest of the device itself would not match. */
function describeVerified(result: RestoreResult): string {
  if (!result.imageDigest) return 'every chunk verified against its id';
  const verified = `${result.imageDigest.algorithm} of the restored image verified${result.resized ? ' before resizing' : ''}`;
  if (!result.bytesLeftUnused) return verified;
  return `${verified}, with its ${formatBytes(result.bytesLeftUnused)} of unused blocks counted as zeros: the device keeps its old bytes there (--zero-unused writes the zeros, so that a digest of the device matches)`;
}

function describeFileResult(result: FileRestoreResult): string {
  const lines = [
    `Restored snapshot ${result.snapshot.slice(0, 12)} into ${result.destination}: ${result.restored} restored, ${result.unchanged} unchanged, ${result.skipped} skipped (${formatBytes(result.bytesWritten)} written)`,
  ];
  if (result.warnings > 0) lines.push(`${result.warnings} warning(s): metadata that could not be set (see above)`);
  if (result.verified) {
    const { entries, mismatches } = result.verified;
    lines.push(mismatches.length === 0 ? `Verified ${entries} entries: all match the snapshot` : `Verified ${entries} entries: ${mismatches.length} difference(s)`);
    for (const m of mismatches) lines.push(`DIFFERS ${m.path}: ${m.problem}`);
  }
  return lines.join('\n') + '\n';
}

function describeResized(r: ResizedPartition): string {
  const what = r.partition === undefined ? `The ${r.filesystem} filesystem` : `Partition ${r.partition} (${r.filesystem})`;
  const moved = r.newOffset === r.oldOffset ? '' : `, moved from offset ${r.oldOffset} to ${r.newOffset}`;
  const verb = r.newSize > r.oldSize ? 'grown' : r.newSize < r.oldSize ? 'shrunk' : 'kept at';
  return `${what} ${verb} ${formatBytes(r.oldSize)} → ${formatBytes(r.newSize)}${moved} (${r.tool})`;
}

/** `--grow`/`--shrink` alone (an empty value) lets the plugin pick the partition; with a value, it is the partition's number. */
function optionalPartition(flag: string, value: string): number | true {
  if (value === '') return true;
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) throw new UsageError(`${flag} takes a partition number (1, 2, …) or nothing, not ${value}`);
  return number;
}

function checkedPartition(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) throw new UsageError(`--partition must be a partition number (1, 2, …), not ${value}`);
  return value;
}
