import { ExitCode } from '../../errors.js';
import { JobLoader } from '../../job/job-loader.js';
import { ShowOperation } from '../../operations/snapshots.js';
import { isFileManifest, type FileSnapshotManifest, type SnapshotManifest } from '../../repository/snapshot.js';
import type { LvmLayout } from '../../source.js';
import { defineCommand, withJob, withSnapshot } from '../command.js';
import { formatBytes, formatRanges } from '../format.js';
import { escapeName } from '../format-entries.js';

export const showCommand = defineCommand({
  command: 'show <job> <snapshot>',
  describe: 'Show a snapshot: its layout, partitions, filesystems, used and total bytes',
  builder: (yargs) => withSnapshot(withJob(yargs)),
  async run(args, { core, output }) {
    const job = await core.get(JobLoader).load(args.job);
    const { id, manifest, objectSize } = await core.get(ShowOperation).run(job, args.snapshot);
    const bytesAdded = manifest.stats.bytesAdded + objectSize;
    if (isFileManifest(manifest)) {
      output.result({ id, ...manifest, tags: manifest.tags ?? [], bytesAdded }, () => describeFileSnapshot(id, manifest, bytesAdded));
      return ExitCode.ok;
    }
    const { chunkMaps: _maps, ...rest } = manifest;
    output.result({ id, ...rest, tags: manifest.tags ?? [], bytesAdded }, () => describeSnapshot(id, manifest, bytesAdded));
    return ExitCode.ok;
  },
});

function describeSnapshot(id: string, m: SnapshotManifest, bytesAdded: number): string {
  const layout = m.layout;
  const lines = [
    `snapshot   ${id}`,
    `time       ${m.time}  (host ${m.hostname}, job ${m.job})`,
    ...(m.tags?.length ? [`tags       ${m.tags.join(', ')}`] : []),
    `source     ${m.source.type} ${m.source.path} (${layout.kind})`,
    `size       ${formatBytes(m.size)} (${m.size} bytes), sector ${layout.sectorSize} bytes, chunks of ${formatBytes(m.chunkSize)}`,
    `table      ${layout.partitionTable.type}${layout.partitionTable.diskId ? ` (disk id ${layout.partitionTable.diskId})` : ''}`,
    `mode       ${layout.mode}${layout.filesystem ? `, filesystem ${layout.filesystem}` : ''}`,
    `digest     ${m.imageDigest.algorithm} ${m.imageDigest.hex}`,
    ...(m.imageDigest.algorithm === 'blake3-chunks' ? [`           (of an image file: split -b ${m.chunkSize} --filter='b3sum --no-names' IMAGE | b3sum --no-names)`] : []),
    `stored     ${formatBytes(bytesAdded)} added by this run; ${m.stats.dataChunks} data, ${m.stats.zeroChunks} zero, ${m.stats.unusedChunks} unused chunks`,
  ];
  if (layout.note) lines.push(`note       ${layout.note}`);
  if (m.repairedFrom) lines.push(`repaired   from ${m.repairedFrom.slice(0, 12)}; zeros stand in for ${m.lost?.length ? formatRanges(m.lost) : 'nothing'} (digest is the original image's)`);
  if (layout.partitions.length > 0) lines.push('', ...describePartitions(m));
  if (layout.lvm) lines.push('', ...describeLvm(layout.lvm, 'the volume'));
  for (const p of layout.partitions) if (p.lvm) lines.push('', ...describeLvm(p.lvm, `partition ${p.index}`));
  if (m.unreadable) lines.push('', ...describeUnreadable(m.unreadable));
  return lines.join('\n') + '\n';
}

function describePartitions(m: SnapshotManifest): string[] {
  const lines = ['  #  START          SIZE        FILESYSTEM  MODE   USED        NAME/TYPE'];
  for (const p of m.layout.partitions) {
    const used = p.usedBytes !== undefined ? formatBytes(p.usedBytes) : '-';
    lines.push(`${String(p.index).padStart(3)}  ${String(p.offset).padEnd(13)}  ${formatBytes(p.size).padEnd(10)}  ${(p.filesystem ?? '-').padEnd(10)}  ${p.mode.padEnd(5)}  ${used.padEnd(10)}  ${p.name || p.type || ''}`);
    if (p.note) lines.push(`     note: ${p.note}`);
  }
  return lines;
}

/** An LVM2 physical volume: its volume group and the logical volumes, with what was stored of each. */
function describeLvm(lvm: LvmLayout, where: string): string[] {
  const { vg, pv } = lvm;
  const lines = [
    `volume group ${vg.name} (uuid ${vg.uuid}, seqno ${vg.seqno}, extents of ${formatBytes(vg.extentSize)}) on ${where}`,
    `  physical volume ${pv.name} (uuid ${pv.uuid}): ${pv.peCount} extents from byte ${pv.peStart}`,
    '  LV                SIZE        SEGS  FILESYSTEM  MODE   USED',
  ];
  for (const lv of lvm.logicalVolumes) {
    const used = lv.usedBytes !== undefined ? formatBytes(lv.usedBytes) : '-';
    lines.push(`  ${lv.name.padEnd(16)}  ${formatBytes(lv.size).padEnd(10)}  ${String(lv.segments.length).padEnd(4)}  ${(lv.filesystem ?? '-').padEnd(10)}  ${lv.mode.padEnd(5)}  ${used}`);
    if (lv.note) lines.push(`     note: ${lv.note}`);
  }
  return lines;
}

/** The ranges `backup --rescue` could not read, all of them: the image holds zeros there. */
function describeUnreadable(ranges: NonNullable<SnapshotManifest['unreadable']>): string[] {
  const total = ranges.reduce((sum, r) => sum + r.length, 0);
  const lines = [`unreadable ${ranges.length} range(s) of the source, ${formatBytes(total)} (${total} bytes) in all, stored as zeros:`, '  OFFSET         LENGTH'];
  for (const r of ranges) lines.push(`  ${String(r.offset).padEnd(13)}  ${r.length}`);
  return lines;
}

/** A file snapshot in words: what was backed up, against what, what it cost, what is missing. */
function describeFileSnapshot(id: string, m: FileSnapshotManifest, bytesAdded: number): string {
  const s = m.stats;
  const lines = [
    `snapshot   ${id}`,
    `time       ${m.time}  (host ${m.hostname}, job ${m.job})`,
    ...(m.tags?.length ? [`tags       ${m.tags.join(', ')}`] : []),
    `kind       files (source ${m.source.type})`,
    `paths      ${m.paths.map((p) => escapeName(Buffer.from(p))).join(', ')}`,
    `parent     ${m.parent ? `${m.parent.slice(0, 12)} (files unchanged since then were not read again)` : 'none (every file was read)'}`,
    `contents   ${count(s.files)} files, ${count(s.dirs)} folders, ${count(s.others)} others (links, devices, FIFOs); ${formatBytes(s.totalBytes)} (${s.totalBytes} bytes) of files`,
    `read       ${formatBytes(s.bytesRead)}; ${count(s.unchangedFiles)} unchanged files not read again`,
    `stored     ${formatBytes(bytesAdded)} added by this run; ${count(s.dataChunks)} data chunks (${count(s.newChunks)} new), ${count(s.treeBlobs)} trees; compression ${m.compression}`,
    `chunker    ${m.chunker.algorithm} min ${formatBytes(m.chunker.min)}, avg ${formatBytes(m.chunker.avg)}, max ${formatBytes(m.chunker.max)}`,
    `duration   ${(s.durationMs / 1000).toFixed(1)} s`,
  ];
  if (s.changedWhileRead > 0) lines.push(`changed    ${count(s.changedWhileRead)} file(s) changed while they were read: their content may mix old and new (\`cairn ls\` marks them)`);
  if (m.skipped?.length) lines.push('', ...describeSkipped(m));
  return lines.join('\n') + '\n';
}

/** The paths the backup could not read: the snapshot is incomplete. */
function describeSkipped(m: FileSnapshotManifest): string[] {
  const skipped = m.skipped ?? [];
  const total = Math.max(m.skippedCount ?? 0, skipped.length);
  const lines = [`incomplete ${count(total)} path(s) could not be read:`];
  for (const { path, reason } of skipped) lines.push(`  ${escapeName(Buffer.from(path))}: ${reason}`);
  if (total > skipped.length) lines.push(`  … and ${count(total - skipped.length)} more (the snapshot lists the first ${skipped.length})`);
  return lines;
}

function count(n: number): string {
  return n.toLocaleString('en-US');
}
