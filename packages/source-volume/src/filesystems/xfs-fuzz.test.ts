// Random damage to the superblock, the AGFs and the bnobt blocks of small XFS filesystems. The
// mapper must either refuse (InconsistentMetadataError: the volume is then imaged exactly) or
// return a map covering every block that the damaged metadata leaves in use, as the plain
// bnobt reader in this file reads it and as xfs_db (`freesp -d`) reads it; neither shares code
// with xfs.ts. On v5 most damage is caught by a CRC, so most rounds re-seal the CRCs of the
// buffers they changed: the structural checks have to catch what is left.
//
// The damage is drawn from a seeded PRNG: a failure names its seed and round, and
// CAIRN_XFS_FUZZ_SEED=<seed> replays the same run. CAIRN_XFS_FUZZ_ROUNDS=<n> runs n rounds per
// variant (100 by default; 34000 gives the 100,000-input run of scripts/fuzz-xfs.sh), where
// xfs_db then judges only every 50th mapped round (it costs a process each time).
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Extent } from '@cairn/core';
import { InconsistentMetadataError } from './inconsistent.js';
import { bytesReader, envInteger, mulberry32, writeStaleImage } from './test-support.js';
import { mapXfsUsedBlocks, xfsChecksum } from './xfs.js';

const MiB = 1024 * 1024;
const VOLUME_SIZE = 64 * MiB;
const DEFAULT_SEED = 20261202;
const MKFS_ENV = { ...process.env, TEST_DIR: '1', TEST_DEV: '1', QA_CHECK_FS: '1' };

const ROUNDS = envInteger('CAIRN_XFS_FUZZ_ROUNDS', 100, 10_000_000);
/** xfs_db judges every mapped round in the suite, every 50th in a long run. */
const XFS_DB_EVERY = ROUNDS > 1000 ? 50 : 1;

const VARIANTS = [
  { name: 'v4, 4 KiB blocks, 4 AGs', mkfs: ['-m', 'crc=0', '-d', 'agcount=4'], fragment: false },
  { name: 'v5, 4 KiB blocks, 3 AGs, files', mkfs: ['-d', 'agcount=3'], fragment: false },
  { name: 'v5, 1 KiB blocks, 1 AG, a two-level bnobt', mkfs: ['-b', 'size=1024', '-d', 'agcount=1'], fragment: true },
];

let workDir: string;
const mounted: string[] = [];
beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'cairn-xfs-fuzz-'));
});
afterAll(async () => {
  for (const mountPoint of mounted) spawnSync('umount', [mountPoint]);
  await rm(workDir, { recursive: true, force: true });
});

/** A filesystem to damage; v5 ones get files (and, to fragment free space, every other one deleted). */
async function makeImage(variant: (typeof VARIANTS)[number], index: number): Promise<string> {
  const image = path.join(workDir, `fuzz-${index}.img`);
  await writeStaleImage(image, VOLUME_SIZE);
  execFileSync('mkfs.xfs', ['-q', '-f', ...variant.mkfs, image], { env: MKFS_ENV, stdio: 'ignore' });
  if (variant.mkfs.includes('crc=0')) return image; // this kernel mounts no v4
  const dir = path.join(workDir, `mnt-${index}`);
  await mkdir(dir);
  execFileSync('mount', ['-o', 'loop', image, dir]);
  mounted.push(dir);
  try {
    const count = variant.fragment ? 600 : 60;
    for (let i = 0; i < count; i++) await writeFile(path.join(dir, `f${i}`), randomBytes(variant.fragment ? 900 : 1 + i * 3000));
    execFileSync('sync');
    if (variant.fragment) for (let i = 0; i < count; i += 2) await rm(path.join(dir, `f${i}`));
  } finally {
    execFileSync('umount', [dir]);
    mounted.pop();
  }
  return image;
}

// ---------------------------------------------------------------------------------------------
// A plain reader of the XFS structures the fuzz damages; it checks nothing it does not need to.

interface Geometry {
  version: number;
  blockSize: number;
  sectorSize: number;
  agBlocks: number;
  agCount: number;
  dataBlocks: number;
}

function geometry(image: Buffer): Geometry {
  return {
    version: image.readUInt16BE(100) & 0xf,
    blockSize: image.readUInt32BE(4),
    sectorSize: image.readUInt16BE(102),
    agBlocks: image.readUInt32BE(84),
    agCount: image.readUInt32BE(88),
    dataBlocks: Number(image.readBigUInt64BE(8)),
  };
}

/** Byte offsets of the bnobt blocks of one AG, every level, found by following pointers. */
function bnobtBlocks(image: Buffer, g: Geometry, ag: number): Array<{ offset: number; leaf: boolean }> {
  const agStart = ag * g.agBlocks * g.blockSize;
  const header = g.version === 5 ? 56 : 16;
  const found: Array<{ offset: number; leaf: boolean }> = [];
  const visit = (block: number, depth: number) => {
    const offset = agStart + block * g.blockSize;
    if (depth > 10 || block >= g.agBlocks || offset + g.blockSize > image.length || found.some((f) => f.offset === offset)) return;
    const level = image.readUInt16BE(offset + 4);
    const numrecs = image.readUInt16BE(offset + 6);
    found.push({ offset, leaf: level === 0 });
    const maxKeys = Math.floor((g.blockSize - header) / 12);
    if (level > 0) for (let i = 0; i < Math.min(numrecs, maxKeys); i++) visit(image.readUInt32BE(offset + header + maxKeys * 8 + i * 4), depth + 1);
  };
  visit(image.readUInt32BE(agStart + g.sectorSize + 16), 0);
  return found;
}

/** Free extents (absolute blocks) the damaged bnobt leaves list, read without judging them. */
function plainFreeExtents(image: Buffer, g: Geometry): Array<[number, number]> {
  const header = g.version === 5 ? 56 : 16;
  const free: Array<[number, number]> = [];
  for (let ag = 0; ag < g.agCount; ag++) {
    for (const { offset, leaf } of bnobtBlocks(image, g, ag)) {
      if (!leaf) continue;
      const numrecs = Math.min(image.readUInt16BE(offset + 6), Math.floor((g.blockSize - header) / 8));
      for (let i = 0; i < numrecs; i++) free.push([ag * g.agBlocks + image.readUInt32BE(offset + header + i * 8), image.readUInt32BE(offset + header + i * 8 + 4)]);
    }
  }
  return free;
}

/** xfs_db's free extents (AGFL blocks included), or undefined when it cannot read the damaged filesystem. */
function xfsDbFreeExtents(image: string, g: Geometry): Array<[number, number]> | undefined {
  const result = spawnSync('xfs_db', ['-r', '-c', 'freesp -d', image], { encoding: 'utf8', maxBuffer: 64 * MiB, timeout: 30_000 });
  if (result.status !== 0 || /cannot|error|bad magic|corrupt/i.test(result.stderr)) return undefined;
  return [...result.stdout.matchAll(/^\s+(\d+)\s+(\d+)\s+(\d+)$/gm)].map((m): [number, number] => [Number(m[1]) * g.agBlocks + Number(m[2]), Number(m[3])]);
}

/** Extents sorted, not empty, neither overlapping nor touching, inside the volume (one check, not an expect per extent: the long run maps tens of thousands). */
function wellFormed(extents: readonly Extent[], size: number): boolean {
  let end = -1;
  for (const { offset, length } of extents) {
    if (!(length > 0) || offset <= end) return false;
    end = offset + length;
  }
  return end <= size;
}

/** The first few blocks below dataBlocks that `free` leaves in use and no extent covers. */
function uncoveredInUse(free: Array<[number, number]>, extents: readonly Extent[], g: Geometry, limit = 10): number[] {
  const isFree = new Uint8Array(g.dataBlocks);
  for (const [start, count] of free) isFree.fill(1, Math.min(start, g.dataBlocks), Math.min(start + count, g.dataBlocks));
  const covered = new Uint8Array(g.dataBlocks);
  for (const extent of extents) covered.fill(1, Math.floor(extent.offset / g.blockSize), Math.ceil((extent.offset + extent.length) / g.blockSize));
  const missing: number[] = [];
  for (let block = 0; block < g.dataBlocks && missing.length < limit; block++) if (!isFree[block] && !covered[block]) missing.push(block);
  return missing;
}

// ---------------------------------------------------------------------------------------------
// Damage

/** A metadata buffer the fuzz may damage; `crcOffset` is where its v5 CRC sits. */
interface Target {
  start: number;
  length: number;
  /** Bytes of the buffer worth damaging (the rest is padding nobody reads). */
  fields: number;
  crcOffset: number;
}

function damageTargets(image: Buffer): Target[] {
  const g = geometry(image);
  const targets: Target[] = [{ start: 0, length: g.sectorSize, fields: g.version === 5 ? 264 : 208, crcOffset: 224 }];
  const header = g.version === 5 ? 56 : 16;
  for (let ag = 0; ag < g.agCount; ag++) {
    targets.push({ start: ag * g.agBlocks * g.blockSize + g.sectorSize, length: g.sectorSize, fields: 224, crcOffset: 216 });
    for (const { offset, leaf } of bnobtBlocks(image, g, ag)) {
      const used = header + image.readUInt16BE(offset + 6) * 8;
      targets.push({ start: offset, length: g.blockSize, fields: leaf ? Math.min(g.blockSize, used + 16) : g.blockSize, crcOffset: 52 });
    }
  }
  return targets;
}

/** Damages 1 to 4 bytes of the metadata, re-sealing v5 CRCs when `reseal`; returns what to undo and a description. */
function damage(bytes: Buffer, targets: readonly Target[], random: () => number, reseal: boolean): { undo: Array<[number, Buffer]>; what: string } {
  const touched = new Map<Target, Buffer>();
  const changes: string[] = [];
  for (let i = 1 + Math.floor(random() * 4); i > 0; i--) {
    const target = targets[Math.floor(random() * targets.length)]!;
    if (!touched.has(target)) touched.set(target, Buffer.from(bytes.subarray(target.start, target.start + target.length)));
    const offset = target.start + Math.floor(random() * target.fields);
    const to = random() < 0.5 ? bytes[offset]! ^ (1 << Math.floor(random() * 8)) : Math.floor(random() * 256);
    changes.push(`${offset} ${bytes[offset]}→${to}`);
    bytes[offset] = to;
  }
  if (reseal) {
    for (const target of touched.keys()) {
      const buffer = bytes.subarray(target.start, target.start + target.length);
      buffer.writeUInt32LE(xfsChecksum(buffer, target.crcOffset), target.crcOffset);
    }
  }
  return { undo: [...touched].map(([target, original]) => [target.start, original]), what: `${changes.join(', ')}${reseal ? ' (CRCs re-sealed)' : ''}` };
}

async function writeBack(file: FileHandle, bytes: Buffer, ranges: ReadonlyArray<readonly [number, number]>): Promise<void> {
  for (const [start, length] of ranges) await file.write(bytes, start, length, start);
}

// ---------------------------------------------------------------------------------------------

interface Tally {
  mapped: number;
  refused: number;
  judgedByXfsDb: number;
  reasons: Map<string, number>;
}

async function fuzzVariant(variant: (typeof VARIANTS)[number], index: number, seed: number, random: () => number, tally: Tally): Promise<void> {
  const image = await makeImage(variant, index);
  const bytes = await readFile(image);
  const targets = damageTargets(bytes);
  const isV5 = geometry(bytes).version === 5;
  const file = await open(image, 'r+');
  try {
    for (let round = 0; round < ROUNDS; round++) {
      if (ROUNDS > 1000 && round % 5000 === 0) console.log(`xfs fuzz: ${variant.name}, round ${round}, ${JSON.stringify({ mapped: tally.mapped, refused: tally.refused, judgedByXfsDb: tally.judgedByXfsDb })}`);
      const { undo, what } = damage(bytes, targets, random, isV5 && random() < 0.85);
      const where = `seed ${seed} (CAIRN_XFS_FUZZ_SEED=${seed} replays it), ${variant.name}, round ${round}, bytes changed: ${what}`;
      try {
        await judgeRound(bytes, image, file, undo, where, tally);
      } finally {
        for (const [start, original] of undo) original.copy(bytes, start);
        await writeBack(file, bytes, undo.map(([start, original]) => [start, original.length] as const));
      }
    }
  } finally {
    await file.close();
  }
}

async function judgeRound(bytes: Buffer, image: string, file: FileHandle, undo: Array<[number, Buffer]>, where: string, tally: Tally): Promise<void> {
  let extents: Extent[];
  try {
    extents = await mapXfsUsedBlocks(bytesReader(bytes));
  } catch (err) {
    if (!(err instanceof InconsistentMetadataError)) throw new Error(`${where}: the mapper failed instead of refusing: ${err}`, { cause: err });
    expect(err.message, where).toMatch(/^xfs: /);
    tally.refused++;
    const reason = err.message.replace(/\d+/g, 'N').slice(0, 60);
    tally.reasons.set(reason, (tally.reasons.get(reason) ?? 0) + 1);
    return;
  }
  tally.mapped++;
  expect(wellFormed(extents, bytes.length), `${where}: the map is not sorted, separate and inside the volume`).toBe(true);
  const g = geometry(bytes);
  expect(uncoveredInUse(plainFreeExtents(bytes, g), extents, g), `${where}: blocks the bnobt leaves in use are not mapped (plain reader)`).toEqual([]);
  if (tally.mapped % XFS_DB_EVERY !== 0) return;
  await writeBack(file, bytes, undo.map(([start, original]) => [start, original.length] as const));
  const xfsDb = xfsDbFreeExtents(image, g);
  if (xfsDb === undefined) return;
  tally.judgedByXfsDb++;
  expect(uncoveredInUse(xfsDb, extents, g), `${where}: blocks xfs_db says are in use are not mapped`).toEqual([]);
}

describe('mapXfsUsedBlocks on randomly damaged metadata', () => {
  const seed = envInteger('CAIRN_XFS_FUZZ_SEED', DEFAULT_SEED, 0xffffffff);

  it(`maps every block the damaged bnobt leaves in use, or refuses (seed ${seed}, ${ROUNDS} rounds per variant)`, { timeout: 24 * 3600_000 }, async () => {
    const random = mulberry32(seed);
    const tally: Tally = { mapped: 0, refused: 0, judgedByXfsDb: 0, reasons: new Map() };
    const started = Date.now();
    for (const [index, variant] of VARIANTS.entries()) await fuzzVariant(variant, index, seed, random, tally);
    const summary = JSON.stringify({ ...tally, reasons: Object.fromEntries([...tally.reasons].sort((a, b) => b[1] - a[1]).slice(0, 15)), seconds: (Date.now() - started) / 1000 });
    if (ROUNDS > 1000) console.log(`xfs fuzz: ${VARIANTS.length * ROUNDS} rounds: ${summary}`);
    // Both outcomes happen, and xfs_db judged mapped rounds too.
    expect(tally.mapped + tally.refused, summary).toBe(VARIANTS.length * ROUNDS);
    expect(tally.refused, summary).toBeGreaterThan(0);
    expect(tally.mapped, summary).toBeGreaterThan(0);
    expect(tally.judgedByXfsDb, summary).toBeGreaterThan(0);
  });
});
