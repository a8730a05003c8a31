import { randomBytes } from 'node:crypto';
import { open, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './exec.js';
import { MiB, writeFileTree, type TreeFile, type TreeSpec } from './volume.js';

/*
 * Whole disks made with the real tools: partitions placed into a disk image with a GPT
 * written by sgdisk, as an installer would leave them.
 */

export const SECTOR = 512;
/** Where the first partition starts, as partitioning tools align it (1 MiB). */
export const FIRST_PARTITION_SECTOR = 2048;

/** Fills a new file of `size` bytes with random data: free space that held something once. */
export async function fillWithStaleData(path: string, size: number): Promise<void> {
  const handle = await open(path, 'w');
  try {
    const block = randomBytes(4 * MiB);
    for (let at = 0; at < size; at += block.length) {
      block[0] = at & 0xff; // blocks differ, so dedup cannot hide stored stale data
      await handle.write(block, 0, Math.min(block.length, size - at), at);
    }
  } finally {
    await handle.close();
  }
}

/** A new sparse file of `size` bytes that reads as zeros. */
export async function zeroFile(path: string, size: number): Promise<void> {
  await writeFile(path, '');
  await truncate(path, size);
}

/** Copies a partition image into the disk image at byte `offset`. */
export async function placePartition(disk: string, partition: string, offset: number): Promise<void> {
  await run('dd', [`if=${partition}`, `of=${disk}`, 'bs=1M', `seek=${offset}`, 'oflag=seek_bytes', 'conv=notrunc', 'status=none']);
}

export interface Ext4Partition {
  image: string;
  files: TreeFile[];
  tree: string;
}

/**
 * An ext4 image of `size` bytes holding a file tree (see writeFileTree); with `stale`, its
 * free space holds random bytes left from before mkfs, as on a disk in use for a while.
 */
export async function makeExt4(dir: string, name: string, size: number, spec: TreeSpec, options: { stale?: boolean } = {}): Promise<Ext4Partition> {
  const tree = join(dir, `${name}-tree`);
  const files = await writeFileTree(tree, spec);
  const image = join(dir, `${name}.img`);
  if (options.stale) await fillWithStaleData(image, size);
  else await zeroFile(image, size);
  await run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', '-d', tree, image]);
  return { image, files, tree };
}

export interface GptPartitionSpec {
  /** The partition's content: an image file exactly `size` bytes long (or shorter). */
  image: string;
  size: number;
  /** sgdisk type code; default 8300 (Linux filesystem). */
  type?: string;
  name?: string;
}

export interface PlacedPartition {
  /** 1, 2, …: as in /dev/sda1. */
  index: number;
  offset: number;
  size: number;
}

/**
 * Writes a GPT disk image of `size` bytes whose partitions follow each other from 1 MiB on,
 * each holding its image. `fill` is what the disk holds outside the partitions.
 */
export async function makeGptDisk(path: string, size: number, partitions: readonly GptPartitionSpec[], fill: 'zeros' | 'stale' = 'zeros'): Promise<PlacedPartition[]> {
  if (fill === 'stale') await fillWithStaleData(path, size);
  else await zeroFile(path, size);
  await run('sgdisk', ['-Z', path]);
  const placed: PlacedPartition[] = [];
  const args: string[] = [];
  let sector = FIRST_PARTITION_SECTOR;
  for (const [i, partition] of partitions.entries()) {
    const index = i + 1;
    args.push('-n', `${index}:${sector}:${sector + partition.size / SECTOR - 1}`, '-t', `${index}:${partition.type ?? '8300'}`);
    if (partition.name) args.push('-c', `${index}:${partition.name}`);
    placed.push({ index, offset: sector * SECTOR, size: partition.size });
    sector += partition.size / SECTOR;
  }
  await run('sgdisk', [...args, path]);
  for (const [i, partition] of partitions.entries()) await placePartition(path, partition.image, placed[i]!.offset);
  return placed;
}

/** `sfdisk -d` without the line naming the device, for comparing the tables of two images. */
export async function partitionTable(image: string): Promise<string> {
  const dump = await run('sfdisk', ['-d', image]);
  return dump
    .split('\n')
    .filter((line) => !line.startsWith('device:'))
    .map((line) => line.replace(/^\S+?(\d+) :/, 'part$1 :'))
    .join('\n');
}

/** Copies `length` bytes at `offset` of `from` into a new file `to` (a partition out of a disk). */
export async function extractRegion(from: string, offset: number, length: number, to: string): Promise<void> {
  await run('dd', [`if=${from}`, `of=${to}`, 'bs=1M', `skip=${offset}`, `count=${length}`, 'iflag=skip_bytes,count_bytes', 'status=none']);
}
