import { open } from 'node:fs/promises';
import type { ResizeOutcome, ResizeRequest, VolumeLayout } from '@cairn/core';
import { resizerFor } from './filesystem-resizers.js';
import { MIB, alignDown, rewriteGpt, rewriteMbr } from './disk-table.js';
import { growSubject } from './resize-plan.js';
import { withLoopDevice } from './tools.js';

/**
 * `restore --grow`: the image is restored onto a larger destination (`request.size` bytes).
 * The last partition is extended to the disk's end (a MiB boundary, before the backup GPT),
 * the table rewritten, and the filesystem grown by its own tool on a loop device over the
 * partition. A bare filesystem is grown to the whole destination.
 */
export async function growImage(request: ResizeRequest): Promise<ResizeOutcome> {
  const subject = growSubject(request);
  const resizer = resizerFor(subject.filesystem)!;
  const diskSize = request.size!;
  const { layout } = request.manifest;
  let newSize = diskSize;
  if (subject.partition !== undefined) {
    newSize = await extendPartition(request.image, layout.partitionTable, layout.sectorSize, diskSize, subject.partition, subject.offset, subject.size);
  }
  await withLoopDevice(request.image, subject.offset, newSize, (device) => resizer.grow(device));
  return {
    size: diskSize,
    resized: [{ ...(subject.partition !== undefined && { partition: subject.partition }), filesystem: subject.filesystem, oldOffset: subject.offset, newOffset: subject.offset, oldSize: subject.size, newSize, tool: resizer.tool }],
  };
}

/** Rewrites the table with the partition reaching the disk's end; returns its new size. */
async function extendPartition(image: string, table: VolumeLayout['partitionTable'], sectorSize: number, diskSize: number, index: number, offset: number, oldSize: number): Promise<number> {
  const handle = await open(image, 'r+');
  try {
    if (table.type === 'gpt') {
      // The backup entries (usually 32 sectors) and header end the disk; the partition ends on a MiB boundary before them.
      const entryBytes = Number(table['entryCount'] ?? 128) * Number(table['entrySize'] ?? 128);
      const lastUsableEnd = diskSize - (Math.ceil(entryBytes / sectorSize) + 1) * sectorSize;
      const newSize = Math.max(oldSize, alignDown(lastUsableEnd) - offset);
      await rewriteGpt(handle, sectorSize, diskSize, [{ index, offset, size: newSize }]);
      await handle.sync();
      return newSize;
    }
    const newSize = Math.max(oldSize, Math.min(alignDown(diskSize), alignDown(0xffffffff * sectorSize, MIB)) - offset);
    await rewriteMbr(handle, sectorSize, [{ index, offset, size: newSize }]);
    await handle.sync();
    return newSize;
  } finally {
    await handle.close();
  }
}
