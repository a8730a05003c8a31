// Random damage to the metadata of small ext2/ext4 filesystems. The mapper must either refuse
// (InconsistentMetadataError: the volume is then imaged exactly) or return a map that covers
// every block the damaged block bitmaps mark as in use, as e2fsprogs reads them (debugfs testb)
// and as the plain bitmap reader in this file reads them; neither shares code with ext4.ts.
//
// The damage is drawn from a seeded PRNG: a failure names its seed and round, and
// CAIRN_EXT4_FUZZ_SEED=<seed> replays the same run.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, open, readFile, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Extent } from '@cairn/core';
import { mapExt4UsedBlocks } from './ext4.js';
import { InconsistentMetadataError } from './inconsistent.js';
import { bytesReader, envInteger, expectWellFormed, mulberry32 } from './test-support.js';

const MiB = 1024 * 1024;
const VOLUME_SIZE = 8 * MiB;
const ROUNDS = 100;
const DEFAULT_SEED = 20261201;

// Checksums are off in every variant: with them, nearly every change is caught by a checksum,
// and what this test is after is damage that the mapper has to judge by the numbers.
const VARIANTS = [
  { name: 'ext2, 1 KiB blocks, 4 groups', args: ['-t', 'ext2', '-b', '1024', '-g', '2048'] },
  { name: 'ext4 with flex_bg, 1 KiB blocks, 2 groups', args: ['-O', '^metadata_csum,^uninit_bg,^64bit', '-b', '1024', '-g', '4096'] },
  { name: 'ext4 with 64bit descriptors, 4 KiB blocks, 2 groups', args: ['-O', '^metadata_csum,^uninit_bg', '-b', '4096', '-g', '1024'] },
];

let workDir: string;
beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'cairn-ext4-fuzz-'));
});
afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

/**
 * Byte ranges [offset, length) whose values the used-block map depends on: the superblock's
 * fields up to s_blocks_count_hi and friends, the group descriptors, and each group's block
 * bitmap bits (the rest of those blocks, inode bitmaps and tables do not bear on it).
 */
function metadataRanges(image: string): Array<[number, number]> {
  const dump = execFileSync('dumpe2fs', [image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)$`, 'm').exec(dump)![1]);
  const blockSize = field('Block size');
  const descriptorSize = /^Group descriptor size:\s+(\d+)$/m.test(dump) ? field('Group descriptor size') : 32;
  const groups = [...dump.matchAll(/^Group (\d+): \(Blocks (\d+)-(\d+)\)/gm)].map((m) => ({ first: Number(m[2]), last: Number(m[3]) }));
  const table = Number(/Group descriptors at (\d+)-/.exec(dump)![1]);
  const ranges: Array<[number, number]> = [
    [1024, 0x160],
    [table * blockSize, groups.length * descriptorSize],
  ];
  const bitmaps = [...dump.matchAll(/Block bitmap at (\d+)/g)].map((m) => Number(m[1]));
  for (const [i, { first, last }] of groups.entries()) ranges.push([bitmaps[i]! * blockSize, Math.ceil((last - first + 1) / 8)]);
  return ranges;
}

interface Change {
  offset: number;
  from: number;
  to: number;
}

/** `count` random changes to bytes of the metadata ranges (the same offset may come twice). */
function drawChanges(image: Buffer, ranges: Array<[number, number]>, count: number, random: () => number): Change[] {
  const changes: Change[] = [];
  const current = new Map<number, number>();
  for (let i = 0; i < count; i++) {
    const [start, length] = ranges[Math.floor(random() * ranges.length)]!;
    const offset = start + Math.floor(random() * length);
    const to = Math.floor(random() * 256);
    changes.push({ offset, from: current.get(offset) ?? image[offset]!, to });
    current.set(offset, to);
  }
  return changes;
}

/**
 * Runs `use` with the changes made to `bytes` and to the image file, then undoes them. The
 * image is changed in place, byte by byte: copying or rewriting megabytes every round would
 * cost most of the test's time.
 */
async function withChanges<T>(bytes: Buffer, file: FileHandle, changes: readonly Change[], use: () => Promise<T>): Promise<T> {
  for (const { offset, to } of changes) {
    bytes[offset] = to;
    await file.write(Uint8Array.of(to), 0, 1, offset);
  }
  try {
    return await use();
  } finally {
    for (const { offset, from } of [...changes].reverse()) {
      bytes[offset] = from;
      await file.write(Uint8Array.of(from), 0, 1, offset);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// What the damaged metadata marks as in use, read without ext4.ts.

interface Geometry {
  blockSize: number;
  blocksCount: number;
}

/**
 * Blocks the block bitmaps mark in use, read the plain way, with e2fsprogs' rules
 * (lib/ext2fs/rw_bitmaps.c): feature flags are honoured whatever s_rev_level says, a bitmap
 * location past the end reads as all zeros, bits past the last block are not blocks. Handles
 * what the fuzzed filesystems can be: one descriptor block (so meta_bg puts it where it always
 * is), no BLOCK_UNINIT groups (honoured only with checksums).
 */
function blocksMarkedInUse(image: Buffer): Geometry & { used: number[] } {
  const sb = image.subarray(1024, 2048);
  const blockSize = 1024 * 2 ** sb.readUInt32LE(0x18);
  const is64 = (sb.readUInt32LE(0x60) & 0x80) !== 0;
  const blocksCount = sb.readUInt32LE(0x04) + (is64 ? sb.readUInt32LE(0x150) * 2 ** 32 : 0);
  const firstDataBlock = sb.readUInt32LE(0x14);
  const blocksPerGroup = sb.readUInt32LE(0x20);
  const descSize = is64 ? sb.readUInt16LE(0xfe) : 32;
  const groups = Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup);
  if (groups * descSize > blockSize) throw new Error(`this reader handles one descriptor block, not ${groups} descriptors of ${descSize} bytes`);
  if ((sb.readUInt32LE(0x64) & (0x10 | 0x400)) !== 0) throw new Error('this reader does not handle group descriptor checksums (BLOCK_UNINIT)');
  const table = (firstDataBlock + 1) * blockSize;
  const used: number[] = [];
  for (let group = 0; group < groups; group++) {
    const desc = table + group * descSize;
    const bitmapBlock = image.readUInt32LE(desc) + (is64 && descSize >= 64 ? image.readUInt32LE(desc + 0x20) * 2 ** 32 : 0);
    if (bitmapBlock >= blocksCount) continue;
    const bitmap = image.subarray(bitmapBlock * blockSize, (bitmapBlock + 1) * blockSize);
    const first = firstDataBlock + group * blocksPerGroup;
    const count = Math.min(blocksPerGroup, blocksCount - first);
    for (let bit = 0; bit < count; bit++) if (bitmap[bit >>> 3]! & (1 << (bit & 7))) used.push(first + bit);
  }
  return { blockSize, blocksCount, used };
}

/**
 * Blocks 1 to blocksCount - 1 that debugfs says are in use (it takes no block 0), or why
 * e2fsprogs cannot open the filesystem at all.
 */
function debugfsBlocksInUse(image: string, blocksCount: number): { used: number[] } | { unreadable: string } {
  const result = spawnSync('debugfs', ['-R', `testb 1 ${blocksCount - 1}`, image], { encoding: 'utf8', maxBuffer: 64 * MiB });
  const used: number[] = [];
  let answered = 0;
  for (const match of result.stdout.matchAll(/^Block (\d+) (marked in use|not in use)$/gm)) {
    answered++;
    if (match[2] === 'marked in use') used.push(Number(match[1]));
  }
  if (answered === 0 && /while (trying to open|opening filesystem)/.test(result.stderr)) {
    return { unreadable: result.stderr.split('\n').find((line) => /while/.test(line))!.trim() };
  }
  if (answered !== blocksCount - 1) throw new Error(`debugfs answered for ${answered} of ${blocksCount - 1} blocks: ${result.stderr}`);
  return { used };
}

/** The blocks of `used` (sorted) that no extent covers, at most `limit` of them. */
function uncovered(used: readonly number[], extents: readonly Extent[], blockSize: number, limit = 10): number[] {
  const missing: number[] = [];
  let e = 0;
  for (const block of used) {
    const offset = block * blockSize;
    while (e < extents.length && extents[e]!.offset + extents[e]!.length <= offset) e++;
    const extent = extents[e];
    if (!extent || extent.offset > offset || extent.offset + extent.length < offset + blockSize) missing.push(block);
    if (missing.length >= limit) break;
  }
  return missing;
}

// ---------------------------------------------------------------------------------------------

interface Tally {
  mapped: number;
  refused: number;
  judgedByE2fsprogs: number;
  /** Damaged filesystems the mapper mapped but e2fsprogs would not open; judged by this file's reader alone. */
  unreadableByE2fsprogs: string[];
}

/** ROUNDS rounds of damage to one variant's pristine image; every outcome is checked and counted in `tally`. */
async function fuzzVariant(variant: (typeof VARIANTS)[number], seed: number, random: () => number, tally: Tally): Promise<void> {
  const image = path.join(workDir, `fuzz-${VARIANTS.indexOf(variant)}.img`);
  await writeFile(image, Buffer.alloc(0));
  execFileSync('truncate', ['-s', String(VOLUME_SIZE), image]);
  execFileSync('mkfs.ext4', ['-q', '-F', ...variant.args, image]);
  const bytes = await readFile(image);
  const ranges = metadataRanges(image);
  const file = await open(image, 'r+');
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const changes = drawChanges(bytes, ranges, 1 + (round % 4), random);
      const where =
        `seed ${seed} (CAIRN_EXT4_FUZZ_SEED=${seed} replays it), ${variant.name}, round ${round}, ` +
        `bytes changed: ${changes.map((c) => `${c.offset} ${c.from}→${c.to}`).join(', ')}`;
      await withChanges(bytes, file, changes, () => judgeRound(bytes, image, where, tally));
    }
  } finally {
    await file.close();
  }
}

/** Maps the damaged image and checks the outcome: a refusal, or a map covering every block marked in use. */
async function judgeRound(bytes: Buffer, image: string, where: string, tally: Tally): Promise<void> {
  let extents: Extent[];
  try {
    extents = await mapExt4UsedBlocks(bytesReader(bytes));
  } catch (err) {
    if (!(err instanceof InconsistentMetadataError)) throw new Error(`${where}: the mapper failed instead of refusing: ${err}`, { cause: err });
    expect(err.message, where).toMatch(/^ext4: /);
    tally.refused++;
    return;
  }
  tally.mapped++;
  expectWellFormed(extents, bytes.length, where);
  const marked = blocksMarkedInUse(bytes);
  const e2fsprogs = debugfsBlocksInUse(image, marked.blocksCount);
  if ('used' in e2fsprogs) {
    // The two readers agree (debugfs takes no block 0), so checking against one checks against both.
    expect(e2fsprogs.used, `${where}: debugfs and this file's reader disagree`).toEqual(marked.used.filter((block) => block > 0));
    tally.judgedByE2fsprogs++;
  } else {
    tally.unreadableByE2fsprogs.push(`${e2fsprogs.unreadable} (${where})`);
  }
  expect(uncovered(marked.used, extents, marked.blockSize), `${where}: blocks marked in use but left out of the map`).toEqual([]);
}

describe('mapExt4UsedBlocks on randomly damaged metadata', () => {
  const seed = envInteger('CAIRN_EXT4_FUZZ_SEED', DEFAULT_SEED);

  it(`maps every block the damaged bitmaps mark as in use, or refuses (seed ${seed})`, async () => {
    const random = mulberry32(seed);
    const tally: Tally = { mapped: 0, refused: 0, judgedByE2fsprogs: 0, unreadableByE2fsprogs: [] };
    for (const variant of VARIANTS) await fuzzVariant(variant, seed, random, tally);
    // Both outcomes happen, and every map was of a filesystem e2fsprogs opens too, and judged by it.
    const summary = JSON.stringify(tally);
    expect(tally.mapped + tally.refused, summary).toBe(VARIANTS.length * ROUNDS);
    expect(tally.refused, summary).toBeGreaterThan(0);
    expect(tally.unreadableByE2fsprogs, summary).toEqual([]);
    expect(tally.judgedByE2fsprogs, summary).toBe(tally.mapped);
  });
});
