// Random damage to the metadata of small Btrfs filesystems: the superblock, and the nodes of
// the chunk, root and extent trees. The mapper must either refuse (InconsistentMetadataError:
// the volume is then imaged exactly) or return a well-formed map covering every byte the
// damaged metadata says is allocated, as the plain reader in this file reads it (it shares no
// code with btrfs*.ts) and, on a sample of rounds, as btrfs-progs' `dump-tree` reads it.
//
// In half the rounds the checksums of what was changed are recomputed, so that the damage gets
// past the checksum and reaches the parser's judgement. The damage goes to the first copy of a
// node or to both copies (DUP metadata), so that falling back to the second copy is exercised.
//
// The damage is drawn from a seeded PRNG: a failure names its seed and round, and
// CAIRN_BTRFS_FUZZ_SEED=<seed> replays the same damage. The filesystems are made with a fixed
// fsid, but mkfs.btrfs 6.2 still draws the device and chunk tree uuids and the inode times
// itself, so a replay damages the same places of bytes that may differ a little; the round's
// message says which bytes were changed, to reproduce it by hand if need be. CAIRN_FUZZ_ROUNDS=<n> sets the rounds per
// variant (default 100); `scripts/btrfs-fuzz.sh` runs 100,000 in all.
import { mkdir, mkdtemp, open, readFile, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Extent } from '@cairn/core';
import { mapBtrfsUsedBlocks } from './btrfs.js';
import { InconsistentMetadataError } from './inconsistent.js';
import { bytesReader, envInteger, expectWellFormed, mulberry32, writeStaleImage } from './test-support.js';
import { mergeExtents } from '../extent-list.js';
import { MiB, dumpChunks, dumpSuper, expectedMap, progsExtentRanges, run } from './btrfs-testing/test-support.js';

const VOLUME_SIZE = 128 * MiB;
const DEFAULT_SEED = 20261202;

const SEED = envInteger('CAIRN_BTRFS_FUZZ_SEED', DEFAULT_SEED, 0xffffffff);
const ROUNDS = envInteger('CAIRN_FUZZ_ROUNDS', 100, 10_000_000);
/** dump-tree takes ~50 ms a call: a sample of mapped rounds is judged by it too. */
const PROGS_SAMPLES_PER_VARIANT = Math.min(40, Math.max(5, Math.floor(ROUNDS / 25)));

// 4 KiB nodes make trees of more than one level out of a few hundred files.
const VARIANTS = [
  { name: 'defaults with 4 KiB nodes (metadata DUP)', args: ['-n', '4096'], files: 400 },
  { name: 'metadata and data single, 16 KiB nodes', args: ['-m', 'single', '-d', 'single'], files: 150 },
  { name: 'mixed block groups, 4 KiB nodes', args: ['--mixed', '-n', '4096'], files: 200 },
];

let workDir: string;
beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'cairn-btrfs-fuzz-'));
});
afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

/** A damageable region: bytes [start, end) of one copy of a structure, and where its checksum covers. */
interface Region {
  what: string;
  /** Physical offsets of every copy of the structure. */
  copies: number[];
  /** Size of the structure (its checksum covers bytes 32 to size). */
  size: number;
  /** Live byte ranges within the structure (header, item headers, item data), relative to it. */
  live: Array<[number, number]>;
}

/** Live ranges of a tree node: the header and item (or key pointer) array, and the item data. */
function nodeLiveRanges(node: Buffer): Array<[number, number]> {
  const nritems = node.readUInt32LE(0x60);
  const level = node[0x64]!;
  if (level > 0) return [[0, 0x65 + nritems * 33]];
  if (nritems === 0) return [[0, 0x65]];
  const dataStart = 0x65 + node.readUInt32LE(0x65 + (nritems - 1) * 25 + 17);
  return [
    [0, 0x65 + nritems * 25],
    [dataStart, node.length],
  ];
}

/** Every node of the chunk, root and extent trees, as `dump-tree` lists them, with its copies. */
function metadataRegions(image: string, bytes: Buffer): Region[] {
  const sb = dumpSuper(image);
  const nodeSize = Number(sb['nodesize']);
  const chunks = dumpChunks(image);
  const regions: Region[] = [{ what: 'superblock', copies: [64 * 1024], size: 4096, live: [[0, 0x32b + Number(sb['sys_array_size'])]] }];
  for (const tree of ['chunk', 'root', 'extent']) {
    const dump = run('btrfs', ['inspect-internal', 'dump-tree', '-t', tree, image]);
    for (const match of dump.matchAll(/^(?:leaf|node) (\d+) (?:items|level)/gm)) {
      const logical = Number(match[1]);
      const chunk = chunks.find((c) => logical >= c.logical && logical < c.logical + c.length)!;
      const copies = chunk.stripes.map((stripe) => stripe + logical - chunk.logical);
      const node = bytes.subarray(copies[0]!, copies[0]! + nodeSize);
      regions.push({ what: `${tree} tree node ${logical}`, copies, size: nodeSize, live: nodeLiveRanges(node) });
    }
  }
  return regions;
}

interface Round {
  region: Region;
  /** Which copies get the damage: the first, or all of them. */
  copies: number[];
  /** Offsets within the structure and the values written there. */
  changes: Array<{ at: number; to: number }>;
  reseal: boolean;
}

function drawRound(regions: readonly Region[], round: number, random: () => number): Round {
  const region = regions[Math.floor(random() * regions.length)]!;
  const copies = region.copies.length > 1 && random() < 0.5 ? region.copies.slice(0, 1) : region.copies;
  const changes: Round['changes'] = [];
  for (let i = 0; i <= round % 4; i++) {
    const [start, end] = region.live[Math.floor(random() * region.live.length)]!;
    // Mostly single bit flips (subtle), sometimes a whole new byte.
    const at = start + Math.floor(random() * (end - start));
    changes.push({ at, to: random() < 0.7 ? -(1 << Math.floor(random() * 8)) : Math.floor(random() * 256) });
  }
  return { region, copies, changes, reseal: random() < 0.5 };
}

/** Applies a round's damage to `bytes`; returns what to undo it with. */
function applyRound(bytes: Buffer, { region, copies, changes, reseal }: Round): Array<[number, Buffer]> {
  const saved: Array<[number, Buffer]> = copies.map((copy) => [copy, Buffer.from(bytes.subarray(copy, copy + region.size))]);
  for (const copy of copies) {
    for (const { at, to } of changes) bytes[copy + at] = to < 0 ? bytes[copy + at]! ^ -to : to;
    if (reseal) {
      const structure = bytes.subarray(copy, copy + region.size);
      structure.writeUInt32LE(plainCrc32c(structure.subarray(32)), 0);
    }
  }
  return saved;
}

function describeRound(variant: string, round: number, { region, copies, changes, reseal }: Round): string {
  const what = changes.map(({ at, to }) => (to < 0 ? `${at}^${-to}` : `${at}=${to}`)).join(', ');
  return `seed ${SEED} (CAIRN_BTRFS_FUZZ_SEED=${SEED} replays it), ${variant}, round ${round}: ${region.what}, copies ${copies.join('/')}, bytes ${what}${reseal ? ', checksum recomputed' : ''}`;
}

/** The ranges of `needed` that `map` does not cover, at most `limit` of them. */
function uncovered(needed: readonly Extent[], map: readonly Extent[], limit = 5): Extent[] {
  const missing: Extent[] = [];
  let m = 0;
  for (const range of needed) {
    while (m < map.length && map[m]!.offset + map[m]!.length <= range.offset) m++;
    const extent = map[m];
    if (!extent || extent.offset > range.offset || extent.offset + extent.length < range.offset + range.length) missing.push(range);
    if (missing.length >= limit) break;
  }
  return missing;
}

interface Tally {
  mapped: number;
  refused: number;
  judgedByProgs: number;
  unreadableByProgs: number;
  /** How often each refusal reason came up (by its first words). */
  reasons: Map<string, number>;
}

async function fuzzVariant(variant: (typeof VARIANTS)[number], index: number, random: () => number, tally: Tally): Promise<void> {
  const image = path.join(workDir, `fuzz-${index}.img`);
  const source = path.join(workDir, `source-${index}`);
  await writeSourceTree(source, variant.files, random);
  await writeStaleImage(image, VOLUME_SIZE);
  run('mkfs.btrfs', ['-q', '-f', '-K', '-U', `c0ffee00-0000-4000-8000-00000000000${index}`, ...variant.args, '--rootdir', source, image]);
  const bytes = await readFile(image);
  const regions = metadataRegions(image, bytes);
  // The plain reader agrees with btrfs-progs on the pristine image, so it can stand in for it.
  expect(mergeExtents(plainAllocatedRanges(bytes))).toEqual(progsExtentRanges(image));
  let progsSamples = 0;
  const file = await open(image, 'r+');
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const damage = drawRound(regions, round, random);
      const where = describeRound(variant.name, round, damage);
      const saved = applyRound(bytes, damage);
      try {
        const mapped = await judgeRound(bytes, where, tally);
        if (mapped && progsSamples < PROGS_SAMPLES_PER_VARIANT && random() < 0.2) {
          progsSamples++;
          await judgeByProgs(bytes, saved, file, image, mapped, where, tally);
        }
      } finally {
        for (const [copy, original] of saved) original.copy(bytes, copy);
      }
    }
  } finally {
    await file.close();
  }
}

/** Small files (inlined in metadata) and larger ones (data extents), from the PRNG. */
async function writeSourceTree(dir: string, files: number, random: () => number): Promise<void> {
  for (let i = 0; i < files; i++) {
    const folder = path.join(dir, `d${i % 5}`);
    await mkdir(folder, { recursive: true });
    const size = random() < 0.8 ? 1 + Math.floor(random() * 3000) : 5000 + Math.floor(random() * 200_000);
    await writeFile(path.join(folder, `f${i}`), Buffer.alloc(size, i & 0xff));
  }
}

/** Maps the damaged image and checks the outcome; returns the map when there is one. */
async function judgeRound(bytes: Buffer, where: string, tally: Tally): Promise<Extent[] | undefined> {
  let extents: Extent[];
  try {
    extents = await mapBtrfsUsedBlocks(bytesReader(bytes));
  } catch (err) {
    if (!(err instanceof InconsistentMetadataError)) throw new Error(`${where}: the mapper failed instead of refusing: ${err}`, { cause: err });
    expect(err.message, where).toMatch(/^btrfs: /);
    tally.refused++;
    const reason = err.message.replace(/\d+/g, 'N').replace(/ \(.*/, '').slice(0, 80);
    tally.reasons.set(reason, (tally.reasons.get(reason) ?? 0) + 1);
    return undefined;
  }
  tally.mapped++;
  expectWellFormed(extents, bytes.length, where);
  let allocated: Extent[];
  try {
    allocated = plainAllocatedRanges(bytes);
  } catch (err) {
    throw new Error(`${where}: the mapper mapped metadata the plain reader cannot read (${(err as Error).message})`, { cause: err });
  }
  expect(uncovered(allocated, extents), `${where}: allocated ranges left out of the map`).toEqual([]);
  return extents;
}

/**
 * The same judgement by btrfs-progs: the damaged structures are written into the image file
 * (and put back after), and dump-tree says what is allocated.
 */
async function judgeByProgs(bytes: Buffer, saved: Array<[number, Buffer]>, file: FileHandle, image: string, extents: Extent[], where: string, tally: Tally): Promise<void> {
  for (const [copy, original] of saved) await file.write(bytes, copy, original.length, copy);
  try {
    let needed: Extent[];
    try {
      needed = expectedMap(image);
    } catch {
      tally.unreadableByProgs++;
      return;
    }
    tally.judgedByProgs++;
    expect(uncovered(needed, extents), `${where}: btrfs-progs lists allocated ranges the map leaves out`).toEqual([]);
  } finally {
    for (const [copy, original] of saved) await file.write(original, 0, original.length, copy);
  }
}

// ---------------------------------------------------------------------------------------------
// What the damaged metadata says is allocated, read the plain way, without btrfs*.ts: the
// superblock, the chunks (sys_chunk_array, then the chunk tree), the root tree for the extent
// tree's root, and every EXTENT_ITEM and METADATA_ITEM, translated to every copy. A node copy
// is taken when it passes what the kernel checks before trusting a copy (checksum, bytenr,
// fsid, level, generation, item count); otherwise the next copy is tried, as the kernel does.
// Anything out of bounds throws.

const CRC32C = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** Standard CRC-32C (initial and final inversion), as Btrfs stores it. */
function plainCrc32c(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC32C[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

interface PlainChunk {
  logical: number;
  length: number;
  stripes: number[];
}

const u64 = (buffer: Buffer, at: number) => Number(buffer.readBigUInt64LE(at));

function plainChunk(buffer: Buffer, keyAt: number): PlainChunk {
  const at = keyAt + 17;
  const stripes = Array.from({ length: buffer.readUInt16LE(at + 44) }, (_, i) => u64(buffer, at + 48 + i * 32 + 8));
  return { logical: u64(buffer, keyAt + 9), length: u64(buffer, at), stripes };
}

function plainAllocatedRanges(bytes: Buffer): Extent[] {
  const sb = bytes.subarray(0x10000, 0x11000);
  if (plainCrc32c(sb.subarray(32)) !== sb.readUInt32LE(0)) throw new Error('superblock checksum');
  const nodeSize = sb.readUInt32LE(0x94);
  const fsid = sb.readBigUInt64LE(0xbc) & 0x400n ? sb.subarray(0x23b, 0x24b) : sb.subarray(0x20, 0x30);
  let chunks: PlainChunk[] = [];
  const sysArray = sb.subarray(0x32b, 0x32b + sb.readUInt32LE(0xa0));
  for (let at = 0; at < sysArray.length; at += 17 + 48 + 32 * sysArray.readUInt16LE(at + 17 + 44)) chunks.push(plainChunk(sysArray, at));
  let reads = 0;

  const readNode = (logical: number, level: number, generation: bigint): Buffer => {
    if (++reads > 100_000) throw new Error('too many node reads');
    const chunk = chunks.find((c) => logical >= c.logical && logical + nodeSize <= c.logical + c.length);
    if (!chunk) throw new Error(`node ${logical} outside every chunk`);
    for (const stripe of chunk.stripes) {
      const node = bytes.subarray(stripe + logical - chunk.logical, stripe + logical - chunk.logical + nodeSize);
      if (node.length !== nodeSize || plainCrc32c(node.subarray(32)) !== node.readUInt32LE(0)) continue;
      const nritems = node.readUInt32LE(0x60);
      const fits = level === 0 ? nritems * 25 <= nodeSize - 0x65 : nritems > 0 && nritems * 33 <= nodeSize - 0x65;
      if (u64(node, 0x30) === logical && node.subarray(0x20, 0x30).equals(fsid) && node[0x64] === level && node.readBigUInt64LE(0x50) === generation && fits) return node;
    }
    throw new Error(`no good copy of node ${logical}`);
  };

  const walk = (logical: number, level: number, generation: bigint, onItem: (leaf: Buffer, itemAt: number, dataAt: number) => void): void => {
    const node = readNode(logical, level, generation);
    for (let i = 0; i < node.readUInt32LE(0x60); i++) {
      if (level > 0) {
        const at = 0x65 + i * 33;
        walk(u64(node, at + 17), level - 1, node.readBigUInt64LE(at + 25), onItem);
      } else {
        const at = 0x65 + i * 25;
        const dataAt = 0x65 + node.readUInt32LE(at + 17);
        if (dataAt + node.readUInt32LE(at + 21) > nodeSize) throw new Error('item data outside its leaf');
        onItem(node, at, dataAt);
      }
    }
  };

  const treeChunks: PlainChunk[] = [];
  walk(u64(sb, 0x58), sb[0xc7]!, sb.readBigUInt64LE(0xa4), (leaf, at) => {
    if (leaf[at + 8] === 228) treeChunks.push(plainChunk(Buffer.concat([leaf.subarray(at, at + 17), leaf.subarray(0x65 + leaf.readUInt32LE(at + 17))]), 0));
  });
  chunks = treeChunks;

  let extentRoot: [number, number, bigint] | undefined;
  walk(u64(sb, 0x50), sb[0xc6]!, sb.readBigUInt64LE(0x48), (leaf, at, dataAt) => {
    if (leaf.readBigUInt64LE(at) === 2n && leaf[at + 8] === 132 && leaf.readBigUInt64LE(at + 9) === 0n) extentRoot = [u64(leaf, dataAt + 176), leaf[dataAt + 238]!, leaf.readBigUInt64LE(dataAt + 160)];
  });
  if (!extentRoot) throw new Error('no extent tree');

  const ranges: Extent[] = [];
  walk(...extentRoot, (leaf, at) => {
    const type = leaf[at + 8];
    if (type !== 168 && type !== 169) return;
    const logical = u64(leaf, at);
    const length = type === 169 ? nodeSize : u64(leaf, at + 9);
    const chunk = chunks.find((c) => logical >= c.logical && logical + length <= c.logical + c.length);
    if (!chunk) throw new Error(`extent ${logical} (+${length}) outside every chunk`);
    for (const stripe of chunk.stripes) ranges.push({ offset: stripe + logical - chunk.logical, length });
  });
  return ranges.sort((a, b) => a.offset - b.offset);
}

describe('mapBtrfsUsedBlocks on randomly damaged metadata', () => {
  it(`maps everything the damaged trees say is allocated, or refuses (seed ${SEED}, ${ROUNDS} rounds per variant)`, async () => {
    const random = mulberry32(SEED);
    const tally: Tally = { mapped: 0, refused: 0, judgedByProgs: 0, unreadableByProgs: 0, reasons: new Map() };
    for (const [index, variant] of VARIANTS.entries()) await fuzzVariant(variant, index, random, tally);
    const summary = JSON.stringify({ ...tally, reasons: Object.fromEntries([...tally.reasons].sort((a, b) => b[1] - a[1])) }, null, 1);
    if (process.env['CAIRN_FUZZ_REPORT']) await writeFile(process.env['CAIRN_FUZZ_REPORT'], summary);
    expect(tally.mapped + tally.refused, summary).toBe(VARIANTS.length * ROUNDS);
    // Both outcomes happen, and btrfs-progs judged some of the maps.
    expect(tally.refused, summary).toBeGreaterThan(0);
    expect(tally.mapped, summary).toBeGreaterThan(0);
    expect(tally.judgedByProgs, summary).toBeGreaterThan(0);
  }, 120_000 + VARIANTS.length * ROUNDS * 50);
});

