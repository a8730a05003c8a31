// Helpers shared by the Btrfs used-block map tests (excluded from the build, like the tests):
// what btrfs-progs says about an image, read from `btrfs inspect-internal` output, so that the
// tests judge the mapper by a reader that shares no code with it.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { Extent } from '@cairn/core';
import type { VolumeReader } from '../../extents.js';
import { mergeExtents } from '../../extent-list.js';

export const MiB = 1024 * 1024;

export const run = (command: string, args: string[]): string =>
  execFileSync(command, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 256 * MiB });

export const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

export interface DumpedChunk {
  logical: number;
  length: number;
  type: string;
  stripes: number[];
}

/** The chunk items `btrfs inspect-internal dump-tree -t chunk` prints. */
export function dumpChunks(image: string): DumpedChunk[] {
  const dump = run('btrfs', ['inspect-internal', 'dump-tree', '-t', 'chunk', image]);
  const chunks: DumpedChunk[] = [];
  for (const item of dump.split(/\n\s+item \d+ /).slice(1)) {
    const head = /^key \(FIRST_CHUNK_TREE CHUNK_ITEM (\d+)\)[^\n]*\n\s+length (\d+) owner \d+ stripe_len \d+ type (\S+)/.exec(item);
    if (!head) continue;
    const stripes = [...item.matchAll(/stripe \d+ devid \d+ offset (\d+)/g)].map((m) => Number(m[1]));
    chunks.push({ logical: Number(head[1]), length: Number(head[2]), type: head[3]!, stripes });
  }
  return chunks;
}

/** [logical, length] of every EXTENT_ITEM and METADATA_ITEM `dump-tree -t extent` prints. */
export function dumpExtents(image: string, nodeSize: number): Array<[number, number]> {
  const dump = run('btrfs', ['inspect-internal', 'dump-tree', '-t', 'extent', image]);
  return [...dump.matchAll(/key \((\d+) (EXTENT_ITEM|METADATA_ITEM) (\d+)\)/g)].map((m) => [Number(m[1]), m[2] === 'METADATA_ITEM' ? nodeSize : Number(m[3])]);
}

/** Superblock fields as `btrfs inspect-internal dump-super` prints them. */
export function dumpSuper(image: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of run('btrfs', ['inspect-internal', 'dump-super', image]).split('\n')) {
    const match = /^(\S+)\t+(.*)$/.exec(line);
    if (match) fields[match[1]!] = match[2]!.trim();
  }
  return fields;
}

/** Physical ranges of every copy of every extent btrfs-progs lists, merged. */
export function progsExtentRanges(image: string): Extent[] {
  const chunks = dumpChunks(image);
  const ranges: Extent[] = [];
  for (const [logical, length] of dumpExtents(image, Number(dumpSuper(image)['nodesize']))) {
    const chunk = chunks.find((c) => logical >= c.logical && logical + length <= c.logical + c.length);
    if (!chunk) throw new Error(`btrfs-progs lists an extent at ${logical} outside every chunk`);
    for (const stripe of chunk.stripes) ranges.push({ offset: stripe + logical - chunk.logical, length });
  }
  return mergeExtents(ranges);
}

/**
 * The used-block map btrfs-progs' view of an image implies: the first MiB, the superblock
 * mirrors inside the device, every system chunk and every copy of every extent.
 */
export function expectedMap(image: string): Extent[] {
  const deviceSize = Number(dumpSuper(image)['total_bytes']);
  const ranges: Extent[] = [{ offset: 0, length: MiB }, ...progsExtentRanges(image)];
  for (const mirror of [64 * 1024, 64 * MiB, 256 * 1024 * MiB]) if (mirror + 4096 <= deviceSize) ranges.push({ offset: mirror, length: 4096 });
  for (const chunk of dumpChunks(image)) if (chunk.type.startsWith('SYSTEM')) for (const stripe of chunk.stripes) ranges.push({ offset: stripe, length: chunk.length });
  return mergeExtents(ranges);
}

/** Physical offsets of every copy of the tree block at `logical`, through btrfs-progs' chunk list. */
export function physicalCopies(image: string, logical: number): number[] {
  const chunk = dumpChunks(image).find((c) => logical >= c.logical && logical < c.logical + c.length);
  if (!chunk) throw new Error(`no chunk holds logical ${logical}`);
  return chunk.stripes.map((stripe) => stripe + logical - chunk.logical);
}

/** A VolumeReader over an image file, for the time `use` runs. */
export async function withImageReader<T>(image: string, use: (volume: VolumeReader) => Promise<T>): Promise<T> {
  const handle = await open(image, 'r');
  try {
    const { size } = await handle.stat();
    return await use({
      size,
      async read(into, offset, length) {
        if (offset < 0 || offset + length > size) throw new RangeError(`read past the end (${offset} + ${length})`);
        const { bytesRead } = await handle.read(into, 0, length, offset);
        if (bytesRead !== length) throw new Error(`short read at ${offset}`);
      },
    });
  } finally {
    await handle.close();
  }
}
