import { TargetTooSmallError, UsageError, type PartitionLayout, type ResizeRequest, type VolumeLayout } from '@cairn/core';
import { canShrink, resizerFor } from './filesystem-resizers.js';
import { GPT_TAIL, MIB, alignDown, alignUp, type PartitionPlace } from './disk-table.js';

/*
 * The arithmetic of a grow or a shrink, from the snapshot's layout alone: which partition
 * changes, where the others go, and the smallest disk that holds it all. Checked before a
 * byte is written; grow.ts and shrink.ts carry it out.
 */

/** The partition (or, with `partition` undefined, the bare filesystem) a resize changes. */
export interface ResizeSubject {
  partition?: number;
  filesystem: string;
  offset: number;
  size: number;
  usedBytes?: number;
}

export function sortedPartitions(layout: VolumeLayout): PartitionLayout[] {
  return [...layout.partitions].sort((a, b) => a.offset - b.offset);
}

function describe(subject: ResizeSubject): string {
  return subject.partition === undefined ? `the ${subject.filesystem} filesystem` : `partition ${subject.partition} (${subject.filesystem})`;
}

function bareSubject(layout: VolumeLayout, flag: string): ResizeSubject {
  if (!layout.filesystem) throw new UsageError(`${flag}: the image holds neither a partition table nor a filesystem cairn recognises`);
  return { filesystem: layout.filesystem, offset: 0, size: layout.size };
}

function subjectOf(p: PartitionLayout): ResizeSubject {
  return { partition: p.index, filesystem: p.filesystem ?? 'unknown', offset: p.offset, size: p.size, ...(p.usedBytes !== undefined && { usedBytes: p.usedBytes }) };
}

function refuseLogical(layout: VolumeLayout, numbers: readonly number[], flag: string): void {
  const logical = layout.partitionTable.type === 'mbr' ? numbers.filter((n) => n > 4) : [];
  if (logical.length) throw new UsageError(`${flag}: partition(s) ${logical.join(', ')} are logical MBR partitions, which cairn does not move or resize`);
}

/** `--grow [N]`: partition N, or the last one; it must be followed by nothing but free space, and hold a filesystem cairn can grow. */
export function growSubject(request: ResizeRequest): ResizeSubject {
  const { layout } = request.manifest;
  if (layout.partitionTable.type === 'none') return checkedGrowable(bareSubject(layout, '--grow'));
  const partitions = sortedPartitions(layout);
  const last = partitions.at(-1);
  if (!last) throw new UsageError('--grow: the disk has a partition table but no partition');
  const chosen = request.partition === undefined ? last : partitions.find((p) => p.index === request.partition);
  if (!chosen) throw new UsageError(`--grow ${request.partition}: the snapshot's disk has no partition ${request.partition} (it has ${partitions.map((p) => p.index).join(', ')})`);
  if (chosen !== last) throw new UsageError(`--grow ${chosen.index}: partition ${last.index} follows it on the disk; only the last partition can grow into the new space`);
  refuseLogical(layout, [chosen.index], '--grow');
  return checkedGrowable(subjectOf(chosen));
}

function checkedGrowable(subject: ResizeSubject): ResizeSubject {
  if (resizerFor(subject.filesystem)) return subject;
  const why = subject.filesystem.startsWith('fat') ? 'there is no tool here that grows FAT' : 'cairn grows ext2/3/4, XFS, Btrfs and NTFS only';
  throw new UsageError(`--grow: ${describe(subject)} cannot be grown (${why}); nothing was written: restore without --grow to keep the layout`);
}

/** A shrink's layout: the subject shrunk in place, the partitions after it moved down behind it, one after another. */
export interface ShrinkLayout {
  subject: ResizeSubject;
  after: PartitionLayout[];
  /** Bytes at the end of the disk for the backup GPT. */
  tail: number;
}

export function shrinkLayout(request: ResizeRequest): ShrinkLayout {
  const { layout } = request.manifest;
  if (layout.partitionTable.type === 'none') return { subject: checkedShrinkable(bareSubject(layout, '--shrink'), request), after: [], tail: 0 };
  const partitions = sortedPartitions(layout);
  const chosen = request.partition === undefined ? pickShrinkable(partitions, request) : partitions.find((p) => p.index === request.partition);
  if (!chosen) throw new UsageError(`--shrink ${request.partition}: the snapshot's disk has no partition ${request.partition}`);
  const after = partitions.filter((p) => p.offset > chosen.offset);
  refuseLogical(layout, [chosen.index, ...after.map((p) => p.index)], '--shrink');
  return { subject: checkedShrinkable(subjectOf(chosen), request), after, tail: layout.partitionTable.type === 'gpt' ? GPT_TAIL : 0 };
}

/** The shrinkable partition with the most free space; an XFS or FAT one is named in the refusal. */
function pickShrinkable(partitions: readonly PartitionLayout[], request: ResizeRequest): PartitionLayout {
  const free = (p: PartitionLayout) => p.size - (p.usedBytes ?? p.size);
  const candidates = partitions.filter((p) => canShrink(p.filesystem)).sort((a, b) => free(b) - free(a));
  if (candidates[0]) return candidates[0];
  const largest = [...partitions].sort((a, b) => b.size - a.size)[0];
  if (largest) checkedShrinkable(subjectOf(largest), request);
  throw new UsageError('--shrink: the disk has no partition cairn can shrink');
}

function checkedShrinkable(subject: ResizeSubject, request: ResizeRequest): ResizeSubject {
  if (canShrink(subject.filesystem)) return subject;
  const minimum = unshrunkSize(request.manifest.layout);
  const why = subject.filesystem === 'xfs' ? 'XFS cannot shrink' : `cairn shrinks ext2/3/4, Btrfs and NTFS only`;
  throw new TargetTooSmallError(
    `${request.image} is smaller than the image (${request.manifest.size} bytes) and ${describe(subject)} cannot be shrunk (${why}): the target needs at least ${minimum} bytes (${alignUp(minimum) / MIB} MiB); nothing was written`,
    minimum,
  );
}

/** Bytes of disk the layout needs as it is: up to its last partition's end, and the backup GPT. */
function unshrunkSize(layout: VolumeLayout): number {
  if (layout.partitionTable.type === 'none') return layout.size;
  const end = Math.max(...layout.partitions.map((p) => p.offset + p.size));
  return Math.min(layout.size, alignUp(end) + (layout.partitionTable.type === 'gpt' ? GPT_TAIL : 0));
}

/** Bytes of disk the layout needs with the subject's filesystem `fsSize` bytes long. */
export function requiredSize(plan: ShrinkLayout, fsSize: number): number {
  if (plan.subject.partition === undefined) return alignUp(fsSize, 4096);
  let end = alignUp(plan.subject.offset + fsSize);
  for (const p of plan.after) end += alignUp(p.size);
  return end + plan.tail;
}

/** The subject's filesystem size that fills a disk of `diskSize` bytes. */
export function fittingSize(plan: ShrinkLayout, diskSize: number): number {
  if (plan.subject.partition === undefined) return alignDown(diskSize, 4096);
  const afterBytes = plan.after.reduce((sum, p) => sum + alignUp(p.size), 0);
  return Math.min(plan.subject.size, alignDown(diskSize - plan.tail - afterBytes) - plan.subject.offset);
}

/** Where the subject (shrunk to `fsSize`) and the partitions after it lie. */
export function shrunkPlaces(plan: ShrinkLayout, fsSize: number): Array<PartitionPlace & { oldOffset: number }> {
  const places = [{ index: plan.subject.partition ?? 0, offset: plan.subject.offset, size: fsSize, oldOffset: plan.subject.offset }];
  let at = alignUp(plan.subject.offset + fsSize);
  for (const p of plan.after) {
    places.push({ index: p.index, offset: at, size: p.size, oldOffset: p.offset });
    at += alignUp(p.size);
  }
  return places;
}

/** Before restoring: a target that cannot hold even the used data is refused now (the exact minimum is known once the filesystem is restored). */
export function checkShrinkFits(plan: ShrinkLayout, request: ResizeRequest): void {
  if (request.size === undefined) return;
  // No filesystem fits in less than a MiB, used data known or not (it is not for a bare filesystem).
  const minimum = requiredSize(plan, Math.max(plan.subject.usedBytes ?? 0, MIB));
  if (request.size >= minimum) return;
  throw new TargetTooSmallError(
    `${request.image} holds ${request.size} bytes, too small for the data of the snapshot's disk even with ${describe(plan.subject)} shrunk: it needs at least ${minimum} bytes (${alignUp(minimum) / MIB} MiB, more once the filesystem's own minimum is known); nothing was written`,
    minimum,
  );
}
