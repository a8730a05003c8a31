import { open, truncate, type FileHandle } from 'node:fs/promises';
import { TargetTooSmallError, type ResizeOutcome, type ResizeRequest, type ResizedPartition } from '@cairn/core';
import { resizerFor } from './filesystem-resizers.js';
import { MIB, alignUp, rewriteGpt, rewriteMbr, type PartitionPlace } from './disk-table.js';
import { fittingSize, requiredSize, shrinkLayout, shrunkPlaces, type ShrinkLayout } from './resize-plan.js';
import { updateHiddenSectors } from './hidden-sectors.js';
import { withLoopDevice } from './tools.js';

/**
 * A shrink, on the staging file the image was restored into (`request.image`, as large as the
 * snapshot's disk): the filesystem is shrunk by its own tool to what the target leaves it (or
 * to its minimum when no target size is given), its partition made that small, the partitions
 * after it moved down behind it, the file cut to the target's size and the table rewritten.
 * A target smaller than the filesystem's minimum is refused before the filesystem is touched.
 */
export async function shrinkImage(request: ResizeRequest): Promise<ResizeOutcome> {
  const plan = shrinkLayout(request);
  const { subject } = plan;
  const resizer = resizerFor(subject.filesystem)!;
  const { diskSize, fsSize } = await withLoopDevice(request.image, subject.offset, subject.size, async (device) => {
    const minimum = await resizer.minimumSize!(device);
    const diskSize = request.size ?? requiredSize(plan, Math.min(alignUp(minimum), subject.size));
    const fsSize = fittingSize(plan, diskSize);
    if (fsSize < Math.min(minimum, subject.size)) refuseTooSmall(request, plan, minimum, diskSize);
    if (fsSize < subject.size) await resizer.shrink!(device, fsSize);
    return { diskSize, fsSize };
  });
  const places = shrunkPlaces(plan, fsSize);
  await moveDown(request.image, plan, places.slice(1), request.manifest.layout.sectorSize);
  await truncate(request.image, diskSize);
  if (subject.partition !== undefined) await rewriteTable(request, diskSize, places);
  const resized: ResizedPartition[] = [
    { ...(subject.partition !== undefined && { partition: subject.partition }), filesystem: subject.filesystem, oldOffset: subject.offset, newOffset: subject.offset, oldSize: subject.size, newSize: fsSize, tool: resizer.tool },
    ...places.slice(1).map((place) => movedPartition(plan, place)),
  ];
  return { size: diskSize, resized };
}

function refuseTooSmall(request: ResizeRequest, plan: ShrinkLayout, minimum: number, diskSize: number): never {
  const needed = requiredSize(plan, alignUp(minimum));
  const what = plan.subject.partition === undefined ? `its ${plan.subject.filesystem} filesystem` : `partition ${plan.subject.partition} (${plan.subject.filesystem})`;
  throw new TargetTooSmallError(
    `The target holds ${diskSize} bytes, too small for the snapshot's disk even with ${what} shrunk to its minimum of ${minimum} bytes: it needs at least ${needed} bytes (${needed / MIB} MiB); nothing was written to it`,
    needed,
  );
}

function movedPartition(plan: ShrinkLayout, place: PartitionPlace & { oldOffset: number }): ResizedPartition {
  const partition = plan.after.find((p) => p.index === place.index)!;
  return { partition: place.index, filesystem: partition.filesystem ?? 'unknown', oldOffset: place.oldOffset, newOffset: place.offset, oldSize: partition.size, newSize: place.size, tool: 'moved' };
}

async function rewriteTable(request: ResizeRequest, diskSize: number, places: readonly PartitionPlace[]): Promise<void> {
  const { layout } = request.manifest;
  const handle = await open(request.image, 'r+');
  try {
    if (layout.partitionTable.type === 'gpt') await rewriteGpt(handle, layout.sectorSize, diskSize, places);
    else await rewriteMbr(handle, layout.sectorSize, places);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Bytes copied at a time when a partition moves. */
const PIECE = 4 * MIB;

/**
 * Copies each partition's bytes from its old offset down to its new one, front to back (so an
 * overlap reads every byte before it is overwritten), and an NTFS or FAT boot sector told its
 * new start (hidden-sectors.ts). Zero pieces are written only where the
 * destination does not read as zeros already, so the staging file stays mostly sparse.
 */
async function moveDown(image: string, plan: ShrinkLayout, places: ReadonlyArray<PartitionPlace & { oldOffset: number }>, sectorSize: number): Promise<void> {
  const handle = await open(image, 'r+');
  try {
    for (const place of places) {
      if (place.offset === place.oldOffset) continue;
      await movePartition(handle, place.oldOffset, place.offset, place.size);
      await updateHiddenSectors(handle, plan.after.find((p) => p.index === place.index)?.filesystem, place.offset, sectorSize);
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function movePartition(handle: FileHandle, from: number, to: number, size: number): Promise<void> {
  const piece = Buffer.alloc(PIECE);
  const there = Buffer.alloc(PIECE);
  for (let done = 0; done < size; done += PIECE) {
    const length = Math.min(PIECE, size - done);
    await handle.read(piece, 0, length, from + done);
    const data = piece.subarray(0, length);
    if (isZero(data)) {
      await handle.read(there, 0, length, to + done);
      if (isZero(there.subarray(0, length))) continue;
    }
    await handle.write(data, 0, length, to + done);
  }
}

function isZero(bytes: Buffer): boolean {
  for (let i = 0; i < bytes.length; i += 8192) if (!bytes.subarray(i, Math.min(bytes.length, i + 8192)).every((b) => b === 0)) return false;
  return true;
}
