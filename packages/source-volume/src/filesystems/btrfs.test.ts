import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, readdir, readlink, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Extent } from '@cairn/core';
import { mapBtrfsUsedBlocks } from './btrfs.js';
import { btrfsCrc32c } from './btrfs-format.js';
import { InconsistentMetadataError } from './inconsistent.js';
import { bytesReader, expectWellFormed, writeStaleImage } from './test-support.js';
import { MiB, dumpChunks, dumpSuper, expectedMap, physicalCopies, run, sha256, withImageReader } from './btrfs-testing/test-support.js';

const KiB = 1024;

let workDir: string;
let sourceDir: string;
/** Relative path → sha256 of every regular file in `sourceDir`. */
const sourceFiles = new Map<string, string>();
let sourceBytes = 0;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'cairn-btrfs-'));
  sourceDir = path.join(workDir, 'source');
  const add = async (relative: string, data: Uint8Array) => {
    const file = path.join(sourceDir, relative);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, data);
    sourceFiles.set(relative, sha256(data));
    sourceBytes += data.length;
  };
  await add('big.bin', randomBytes(9 * MiB));
  await add('medium/one.bin', randomBytes(700 * KiB));
  await add('medium/two.bin', randomBytes(1234567));
  await add('empty', new Uint8Array(0));
  await add('text.txt', Buffer.from('cairn\n'.repeat(1000)));
  // Small files are inlined in the metadata (max_inline), bigger ones get data extents.
  for (let i = 0; i < 300; i++) await add(`many/dir${i % 7}/small-${i}.dat`, randomBytes(1 + ((i * 7919) % 20000)));
  await symlink('text.txt', path.join(sourceDir, 'short-link'));
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

let imageCounter = 0;
/** mkfs.btrfs over stale bytes (-K: no discard, so free space keeps them), with the source tree unless told otherwise. */
async function makeFilesystem(size: number, mkfsArgs: string[], withFiles = true): Promise<string> {
  const image = path.join(workDir, `fs-${imageCounter++}.img`);
  await writeStaleImage(image, size);
  run('mkfs.btrfs', ['-q', '-f', '-K', ...mkfsArgs, ...(withFiles ? ['--rootdir', sourceDir] : []), image]);
  return image;
}

const mapImage = (image: string) => withImageReader(image, mapBtrfsUsedBlocks);

/** Copies only `extents` of `image` into a new sparse file of the same size: what a restore writes. */
async function keepOnly(image: string, extents: readonly Extent[]): Promise<string> {
  const kept = `${image}.kept`;
  const source = await open(image, 'r');
  const target = await open(kept, 'w');
  try {
    await target.truncate((await source.stat()).size);
    const buffer = Buffer.alloc(4 * MiB);
    for (const extent of extents) {
      for (let at = extent.offset; at < extent.offset + extent.length; at += buffer.length) {
        const length = Math.min(buffer.length, extent.offset + extent.length - at);
        await source.read(buffer, 0, length, at);
        await target.write(buffer, 0, length, at);
      }
    }
  } finally {
    await source.close();
    await target.close();
  }
  return kept;
}

/** `btrfs check` finds nothing wrong (it exits 0 and says so). */
function expectCleanCheck(image: string): void {
  const result = spawnSync('btrfs', ['check', '--readonly', image], { encoding: 'utf8' });
  expect(result.status, `${result.stdout}\n${result.stderr}`).toBe(0);
  expect(result.stdout + result.stderr).toMatch(/no error found/);
}

/** Every source file, extracted from `kept` by `btrfs restore` (userspace, no mount), equals the original. */
async function expectFilesIntact(kept: string): Promise<void> {
  const out = `${kept}.files`;
  await mkdir(out);
  run('btrfs', ['restore', '-S', kept, out]);
  for (const [name, digest] of sourceFiles) expect(sha256(await readFile(path.join(out, name))), name).toBe(digest);
  expect(await readlink(path.join(out, 'short-link'))).toBe('text.txt');
  expect((await readdir(path.join(out, 'many'))).length).toBe(7);
}

const mappedBytes = (extents: readonly Extent[]) => extents.reduce((sum, extent) => sum + extent.length, 0);

/** Maps an image, checks the map against btrfs-progs' view, restores from it and checks the result. */
async function checkRoundTrip(image: string, withFiles = true): Promise<Extent[]> {
  const extents = await mapImage(image);
  expectWellFormed(extents, (await readFile(image)).length);
  // Exactly the map btrfs-progs' dump of the chunk and extent trees implies.
  expect(extents).toEqual(expectedMap(image));
  const kept = await keepOnly(image, extents);
  expectCleanCheck(kept);
  if (withFiles) await expectFilesIntact(kept);
  // Stale bytes really were there, and the map left them out.
  expect((await readFile(image)).equals(await readFile(kept))).toBe(false);
  return extents;
}

describe('mapBtrfsUsedBlocks on real filesystems', () => {
  const variants: Array<{ name: string; size: number; args: string[]; dataCopies: number }> = [
    { name: 'defaults (metadata DUP, data single, free space tree, no-holes)', size: 160 * MiB, args: [], dataCopies: 1 },
    { name: 'metadata and data single', size: 160 * MiB, args: ['-m', 'single', '-d', 'single'], dataCopies: 1 },
    { name: 'metadata and data DUP', size: 200 * MiB, args: ['-m', 'dup', '-d', 'dup'], dataCopies: 2 },
    { name: 'mixed block groups', size: 96 * MiB, args: ['--mixed'], dataCopies: 1 },
    { name: '4 KiB nodes', size: 160 * MiB, args: ['-n', '4096'], dataCopies: 1 },
    { name: '64 KiB nodes', size: 160 * MiB, args: ['-n', '65536'], dataCopies: 1 },
    { name: 'without skinny metadata (EXTENT_ITEMs for tree blocks)', size: 160 * MiB, args: ['-O', '^skinny-metadata'], dataCopies: 1 },
  ];

  for (const variant of variants) {
    it(`${variant.name}: the map is btrfs-progs' and a restore from it alone is clean and holds every file`, async () => {
      const image = await makeFilesystem(variant.size, variant.args);
      const extents = await checkRoundTrip(image);
      const mapped = mappedBytes(extents);
      // The files (all incompressible, most in data extents) are there once or twice; the stale rest is not.
      expect(mapped).toBeGreaterThan(variant.dataCopies * (sourceBytes - 2 * MiB));
      expect(mapped).toBeLessThan(variant.dataCopies * sourceBytes + 40 * MiB);
    });
  }

  it('maps a 256 MiB filesystem inside a larger volume (the superblock mirror at 64 MiB included, nothing past its end)', async () => {
    const image = path.join(workDir, 'larger-volume.img');
    await writeStaleImage(image, 320 * MiB);
    run('mkfs.btrfs', ['-q', '-f', '-K', '-b', String(256 * MiB), '--rootdir', sourceDir, image]);
    const extents = await checkRoundTrip(image);
    expect(extents.some((e) => e.offset <= 64 * MiB && e.offset + e.length >= 64 * MiB + 4096)).toBe(true);
    const last = extents.at(-1)!;
    expect(last.offset + last.length).toBeLessThanOrEqual(256 * MiB);
  });

  it('maps a filesystem whose fsid was changed with the metadata_uuid feature (btrfstune -m)', async () => {
    const image = await makeFilesystem(160 * MiB, []);
    run('btrfstune', ['-m', image]);
    expect(Number(dumpSuper(image)['incompat_flags']) & 0x400).toBe(0x400); // METADATA_UUID
    await checkRoundTrip(image);
  });

  it('an empty filesystem maps to little more than its metadata and system chunks', async () => {
    const image = await makeFilesystem(160 * MiB, [], false);
    const extents = await checkRoundTrip(image, false);
    const system = dumpChunks(image).filter((c) => c.type.startsWith('SYSTEM')).reduce((sum, c) => sum + c.length * c.stripes.length, 0);
    expect(mappedBytes(extents)).toBeLessThan(MiB + system + 2 * MiB);
  });
});

async function expectRefusal(mapping: Promise<unknown>, message: RegExp): Promise<void> {
  const error = await mapping.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(InconsistentMetadataError);
  expect((error as Error).message).toMatch(/^btrfs: /);
  expect((error as Error).message).toMatch(message);
}

/** Rewrites the superblock's checksum after a change, as the kernel would. */
function resealSuperblock(bytes: Buffer): void {
  const sb = bytes.subarray(64 * KiB, 64 * KiB + 4096);
  sb.writeUInt32LE(btrfsCrc32c(sb), 0);
}

/** Changes a tree node in memory (every copy, or one) and recomputes its checksum unless told not to. */
function patchNode(bytes: Buffer, image: string, logical: number, change: (node: Buffer) => void, options: { copies?: 'all' | 'first'; reseal?: boolean } = {}): void {
  const nodeSize = Number(dumpSuper(image)['nodesize']);
  const copies = physicalCopies(image, logical);
  for (const physical of options.copies === 'first' ? copies.slice(0, 1) : copies) {
    const node = bytes.subarray(physical, physical + nodeSize);
    change(node);
    if (options.reseal !== false) node.writeUInt32LE(btrfsCrc32c(node), 0);
  }
}

/** The logical address of the extent tree's root, from `dump-tree -t root`. */
function extentTreeRoot(image: string): number {
  const dump = run('btrfs', ['inspect-internal', 'dump-tree', '-t', 'root', image]);
  return Number(/key \(EXTENT_TREE ROOT_ITEM 0\)[^\n]*\n\s+generation \d+ root_dirid \d+ bytenr (\d+)/.exec(dump)![1]);
}

describe('mapBtrfsUsedBlocks on damaged, hostile or unsupported filesystems', () => {
  let pristine: Buffer;
  let image: string;
  beforeAll(async () => {
    // Without files the extent tree is one leaf, the root, which the cases below change.
    image = await makeFilesystem(160 * MiB, [], false);
    pristine = await readFile(image);
  });
  const fresh = () => Buffer.from(pristine);

  it('refuses a volume that is not Btrfs, a truncated image, and a superblock changed behind its checksum', async () => {
    await expectRefusal(mapBtrfsUsedBlocks(bytesReader(new Uint8Array(1 * MiB))), /bad superblock magic/);
    await expectRefusal(mapBtrfsUsedBlocks(bytesReader(new Uint8Array(32 * KiB))), /too small to hold a superblock/);
    await expectRefusal(mapBtrfsUsedBlocks(bytesReader(pristine.subarray(0, 120 * MiB))), /total_bytes 167772160 exceeds the volume size 125829120/);
    const bytes = fresh();
    bytes[64 * KiB + 0x78] ^= 0x10; // bytes_used
    await expectRefusal(mapBtrfsUsedBlocks(bytesReader(bytes)), /superblock checksum mismatch/);
  });

  it('refuses other checksum types, a log tree, an error flag and unknown features (checksum recomputed)', async () => {
    const cases: Array<[(sb: Buffer) => void, RegExp]> = [
      [(sb) => sb.writeUInt16LE(1, 0xc4), /checksum type xxhash64 is not supported/],
      [(sb) => sb.writeBigUInt64LE(BigInt(30 * MiB), 0x60), /log tree present/],
      [(sb) => sb.writeBigUInt64LE(sb.readBigUInt64LE(0x38) | 4n, 0x38), /marked as having errors/],
      [(sb) => sb.writeBigUInt64LE(sb.readBigUInt64LE(0xbc) | (1n << 40n), 0xbc), /unsupported incompat features 0x10000000000/],
      [(sb) => sb.writeBigUInt64LE(sb.readBigUInt64LE(0xbc) | (1n << 12n), 0xbc), /zoned/],
      [(sb) => sb.writeBigUInt64LE(2n, 0x88), /multi-device Btrfs \(2 devices\)/],
      [(sb) => sb.writeUInt32LE(16384 + 4096, 0x94), /invalid nodesize/],
    ];
    for (const [change, reason] of cases) {
      const bytes = fresh();
      change(bytes.subarray(64 * KiB, 68 * KiB));
      resealSuperblock(bytes);
      await expectRefusal(mapBtrfsUsedBlocks(bytesReader(bytes)), reason);
    }
  });

  it('refuses a damaged extent tree when both copies are bad, and reads the second copy when only the first is', async () => {
    const root = extentTreeRoot(image);
    const flip = (node: Buffer) => void (node[2000] ^= 0x55);
    const both = fresh();
    patchNode(both, image, root, flip, { reseal: false });
    await expectRefusal(mapBtrfsUsedBlocks(bytesReader(both)), new RegExp(`extent tree: node ${root}: checksum mismatch`));
    const first = fresh();
    patchNode(first, image, root, flip, { copies: 'first', reseal: false });
    expect(await mapBtrfsUsedBlocks(bytesReader(first))).toEqual(await mapImage(image));
  });

  it('refuses tree nodes that pass their checksum but not the other checks', async () => {
    const root = extentTreeRoot(image);
    const cases: Array<[(node: Buffer) => void, RegExp]> = [
      [(node) => node.writeBigUInt64LE(BigInt(root + 16384), 0x30), /header bytenr .* differs from its address/],
      [(node) => void (node[0x20] ^= 1), /fsid does not match/],
      [(node) => node.writeBigUInt64LE(node.readBigUInt64LE(0x50) + 1n, 0x50), /generation \d+ is newer than the superblock's/],
      [(node) => void (node[0x64] = 1), /level 1, expected 0/],
      [(node) => node.writeUInt32LE(5000, 0x60), /5000 items do not fit/],
      // The extent tree root here is a leaf: swap item 3's key with item 4's, which unsorts them.
      [(node) => swapItemKeys(node, 3, 4), /is not after/],
      [(node) => node.writeUInt32LE(node.readUInt32LE(0x65 + 25 * 2 + 17) - 1, 0x65 + 25 * 2 + 17), /item 2 of leaf .* has its data at/],
    ];
    for (const [change, reason] of cases) {
      const bytes = fresh();
      patchNode(bytes, image, root, change);
      await expectRefusal(mapBtrfsUsedBlocks(bytesReader(bytes)), reason);
    }
  });

  it('refuses an extent tree whose extents do not add up to the block groups (an extent item turned into another key type)', async () => {
    const root = extentTreeRoot(image);
    const bytes = fresh();
    // Turn the first EXTENT_ITEM or METADATA_ITEM into an unrelated key type: the extent vanishes from the
    // tree, keys stay sorted, and only the block group's `used` can tell.
    patchNode(bytes, image, root, (node) => {
      for (let i = 0; i < node.readUInt32LE(0x60); i++) {
        const at = 0x65 + i * 25;
        if (node[at + 8] === 168 || node[at + 8] === 169) {
          node[at + 8] = 167;
          return;
        }
      }
      throw new Error('no extent item in the extent tree root');
    });
    await expectRefusal(mapBtrfsUsedBlocks(bytesReader(bytes)), /block group at logical \d+ says \d+ bytes are used, its extents add up to \d+/);
  });

  it('refuses a RAID profile and a stripe past the device, in a chunk tree with a valid checksum', async () => {
    const chunkRoot = Number(dumpSuper(image)['chunk_root']);
    const data = dumpChunks(image).find((c) => c.type.startsWith('DATA'))!;
    const withChunk = (change: (node: Buffer, chunk: number) => void) => (node: Buffer) => {
      for (let i = 0; i < node.readUInt32LE(0x60); i++) {
        const at = 0x65 + i * 25;
        if (node[at + 8] === 228 && node.readBigUInt64LE(at + 9) === BigInt(data.logical)) return change(node, 0x65 + node.readUInt32LE(at + 17));
      }
      throw new Error('data chunk not found in the chunk root');
    };
    const raid = fresh();
    patchNode(raid, image, chunkRoot, withChunk((node, chunk) => node.writeBigUInt64LE(node.readBigUInt64LE(chunk + 24) | (1n << 3n), chunk + 24)));
    await expectRefusal(mapBtrfsUsedBlocks(bytesReader(raid)), /RAID profile raid0/);
    const far = fresh();
    patchNode(far, image, chunkRoot, withChunk((node, chunk) => node.writeBigUInt64LE(BigInt(159 * MiB), chunk + 48 + 8)));
    await expectRefusal(mapBtrfsUsedBlocks(bytesReader(far)), /past the device's end/);
  });
});

function swapItemKeys(node: Buffer, a: number, b: number): void {
  const keyA = Buffer.from(node.subarray(0x65 + a * 25, 0x65 + a * 25 + 17));
  node.copy(node, 0x65 + a * 25, 0x65 + b * 25, 0x65 + b * 25 + 17);
  keyA.copy(node, 0x65 + b * 25);
}

describe('mapBtrfsUsedBlocks on a filesystem of two devices (RAID1)', () => {
  it('refuses each device as multi-device Btrfs', async () => {
    const first = path.join(workDir, 'raid-a.img');
    const second = path.join(workDir, 'raid-b.img');
    for (const file of [first, second]) {
      await writeFile(file, '');
      await truncate(file, 160 * MiB);
    }
    run('mkfs.btrfs', ['-q', '-f', '-d', 'raid1', '-m', 'raid1', first, second]);
    for (const file of [first, second]) await expectRefusal(mapImage(file), /multi-device Btrfs \(2 devices\)/);
  });
});

// ---------------------------------------------------------------------------------------------
// The block-group-tree feature. btrfs-progs 6.2 on this machine cannot make such a filesystem
// (mkfs -O block-group-tree and btrfstune's conversion came later), so the test converts a
// fresh one by hand, the way btrfstune does, and lets `btrfs check` judge the result: the block
// group items move from the extent tree into a new tree (one leaf, in a free metadata block),
// whose root item goes into the root tree and whose block gets a METADATA_ITEM and leaves the
// free space tree; the metadata block group's `used`, the superblock's bytes_used and its
// compat_ro flag follow. The kernel mounts the result (checked by hand; no loop devices here).

interface RawItem {
  key: Buffer;
  data: Buffer;
}

function leafItems(node: Buffer): RawItem[] {
  return Array.from({ length: node.readUInt32LE(0x60) }, (_, i) => {
    const at = 0x65 + i * 25;
    const offset = 0x65 + node.readUInt32LE(at + 17);
    return { key: Buffer.from(node.subarray(at, at + 17)), data: Buffer.from(node.subarray(offset, offset + node.readUInt32LE(at + 21))) };
  });
}

/** A leaf with `items` (sorted by the caller), the header copied from `template`, data packed from the end. */
function buildLeaf(template: Buffer, bytenr: number, owner: bigint, items: RawItem[]): Buffer {
  const leaf = Buffer.alloc(template.length);
  template.copy(leaf, 0, 0, 0x65);
  leaf.writeBigUInt64LE(BigInt(bytenr), 0x30);
  leaf.writeBigUInt64LE(owner, 0x58);
  leaf.writeUInt32LE(items.length, 0x60);
  leaf[0x64] = 0;
  let dataEnd = leaf.length - 0x65;
  items.forEach(({ key, data }, i) => {
    dataEnd -= data.length;
    key.copy(leaf, 0x65 + i * 25);
    leaf.writeUInt32LE(dataEnd, 0x65 + i * 25 + 17);
    leaf.writeUInt32LE(data.length, 0x65 + i * 25 + 21);
    data.copy(leaf, 0x65 + dataEnd);
  });
  leaf.writeUInt32LE(btrfsCrc32c(leaf), 0);
  return leaf;
}

function rawKey(objectid: bigint, type: number, offset: bigint): Buffer {
  const key = Buffer.alloc(17);
  key.writeBigUInt64LE(objectid, 0);
  key[8] = type;
  key.writeBigUInt64LE(offset, 9);
  return key;
}

/** Converts a fresh, empty filesystem (extent, root and free space trees one leaf each) to the block group tree. */
async function convertToBlockGroupTree(image: string): Promise<void> {
  const sb = dumpSuper(image);
  const nodeSize = Number(sb['nodesize']);
  const generation = BigInt(sb['generation']!);
  const bytes = await readFile(image);
  const extentRoot = extentTreeRoot(image);
  const rootTree = Number(sb['root']);
  const node = (logical: number) => bytes.subarray(physicalCopies(image, logical)[0]!, physicalCopies(image, logical)[0]! + nodeSize);
  const extentItems = leafItems(node(extentRoot));
  const lastTreeBlock = Math.max(...extentItems.filter((item) => item.key[8] === 169).map((item) => Number(item.key.readBigUInt64LE(0))));
  const newBlock = lastTreeBlock + nodeSize;
  const groups = extentItems.filter((item) => item.key[8] === 192);
  const metadataGroup = groups.find((group) => (group.data.readBigUInt64LE(16) & 4n) !== 0n && newBlock >= Number(group.key.readBigUInt64LE(0)))!;
  metadataGroup.data.writeBigUInt64LE(metadataGroup.data.readBigUInt64LE(0) + BigInt(nodeSize), 0);
  const backref = Buffer.alloc(33);
  backref.writeBigUInt64LE(1n, 0); // refs
  backref.writeBigUInt64LE(generation, 8);
  backref.writeBigUInt64LE(2n, 16); // TREE_BLOCK
  backref[24] = 176; // an inline TREE_BLOCK_REF to root 11, the block group tree
  backref.writeBigUInt64LE(11n, 25);
  const newExtentItems = [...extentItems.filter((item) => item.key[8] !== 192), { key: rawKey(BigInt(newBlock), 169, 0n), data: backref }];
  newExtentItems.sort((a, b) => Buffer.compare(sortable(a.key), sortable(b.key)));
  const rootItems = leafItems(node(rootTree));
  const rootItem = Buffer.from(rootItems.find((item) => item.key.readBigUInt64LE(0) === 2n && item.key[8] === 132)!.data);
  rootItem.writeBigUInt64LE(generation, 160);
  rootItem.writeBigUInt64LE(BigInt(newBlock), 176);
  rootItem.writeBigUInt64LE(BigInt(nodeSize), 192);
  rootItem[238] = 0;
  rootItem.writeBigUInt64LE(generation, 239);
  const newRootItems = [...rootItems, { key: rawKey(11n, 132, 0n), data: rootItem }].sort((a, b) => Buffer.compare(sortable(a.key), sortable(b.key)));
  const template = Buffer.from(node(extentRoot));
  const freeSpaceRoot = Number(rootItems.find((item) => item.key.readBigUInt64LE(0) === 10n && item.key[8] === 132)!.data.readBigUInt64LE(176));
  const freeSpaceItems = takeFromFreeSpace(leafItems(node(freeSpaceRoot)), newBlock, nodeSize);
  const writeAll = (logical: number, leaf: Buffer) => physicalCopies(image, logical).forEach((physical) => leaf.copy(bytes, physical));
  writeAll(newBlock, buildLeaf(template, newBlock, 11n, groups));
  writeAll(extentRoot, buildLeaf(template, extentRoot, 2n, newExtentItems));
  writeAll(rootTree, buildLeaf(Buffer.from(node(rootTree)), rootTree, 1n, newRootItems));
  writeAll(freeSpaceRoot, buildLeaf(Buffer.from(node(freeSpaceRoot)), freeSpaceRoot, 10n, freeSpaceItems));
  const superblock = bytes.subarray(64 * KiB, 64 * KiB + 4096);
  superblock.writeBigUInt64LE(superblock.readBigUInt64LE(0x78) + BigInt(nodeSize), 0x78);
  superblock.writeBigUInt64LE(superblock.readBigUInt64LE(0xb4) | 8n, 0xb4);
  resealSuperblock(bytes);
  await writeFile(image, bytes);
}

/** The free space tree's items with [block, block + length) taken out of the free extent holding it. */
function takeFromFreeSpace(items: RawItem[], block: number, length: number): RawItem[] {
  const index = items.findIndex((item) => item.key[8] === 199 && Number(item.key.readBigUInt64LE(0)) <= block && block + length <= Number(item.key.readBigUInt64LE(0) + item.key.readBigUInt64LE(9)));
  if (index < 0) throw new Error(`no free space extent holds ${block}`);
  const start = Number(items[index]!.key.readBigUInt64LE(0));
  const end = start + Number(items[index]!.key.readBigUInt64LE(9));
  const pieces = [[start, block], [block + length, end]].filter(([from, to]) => to! > from!).map(([from, to]) => ({ key: rawKey(BigInt(from!), 199, BigInt(to! - from!)), data: Buffer.alloc(0) }));
  const info = items.filter((item) => item.key[8] === 198 && Number(item.key.readBigUInt64LE(0)) <= block).at(-1)!;
  info.data.writeUInt32LE(info.data.readUInt32LE(0) + pieces.length - 1, 0);
  return [...items.slice(0, index), ...pieces, ...items.slice(index + 1)];
}

/** A key as big-endian bytes (objectid, type, offset), so that Buffer.compare orders keys as Btrfs does. */
function sortable(key: Buffer): Buffer {
  const out = Buffer.alloc(17);
  out.writeBigUInt64BE(key.readBigUInt64LE(0), 0);
  out[8] = key[8]!;
  out.writeBigUInt64BE(key.readBigUInt64LE(9), 9);
  return out;
}

describe('mapBtrfsUsedBlocks with the block-group-tree feature', () => {
  it('reads the block groups from their own tree (a filesystem converted by hand, which btrfs check passes)', async () => {
    const image = await makeFilesystem(160 * MiB, [], false);
    const before = await mapImage(image);
    await convertToBlockGroupTree(image);
    expect(Number(dumpSuper(image)['compat_ro_flags']) & 8).toBe(8);
    expect(run('btrfs', ['inspect-internal', 'dump-tree', '-t', 'extent', image])).not.toContain('BLOCK_GROUP_ITEM');
    expect(run('btrfs', ['inspect-internal', 'dump-tree', '-t', '11', image])).toMatch(/BLOCK_GROUP_ITEM/);
    const extents = await checkRoundTrip(image, false);
    expect(mappedBytes(extents)).toBe(mappedBytes(before) + 2 * Number(dumpSuper(image)['nodesize'])); // the new leaf, twice (DUP)
    // Without the feature flag, the same trees are refused: the extent tree holds no block groups.
    const bytes = await readFile(image);
    const sb = bytes.subarray(64 * KiB, 64 * KiB + 4096);
    sb.writeBigUInt64LE(sb.readBigUInt64LE(0xb4) & ~8n, 0xb4);
    resealSuperblock(bytes);
    await expectRefusal(mapBtrfsUsedBlocks(bytesReader(bytes)), /0 block groups for 3 chunks/);
  });
});
