import type { Extent } from '@cairn/core';
import type { UsedBlockMapper, VolumeReader } from '../extents.js';
import { mergeExtents } from '../extent-list.js';
import {
  BLOCK_GROUP_SYSTEM,
  BLOCK_GROUP_TREE_OBJECTID,
  EXTENT_TREE_OBJECTID,
  FIRST_CHUNK_TREE_OBJECTID,
  KEY_BLOCK_GROUP_ITEM,
  KEY_CHUNK_ITEM,
  KEY_DEV_ITEM,
  KEY_EXTENT_ITEM,
  KEY_METADATA_ITEM,
  KEY_ROOT_ITEM,
  MAX_LEVEL,
  SUPERBLOCK_MIRRORS,
  SUPERBLOCK_OFFSET,
  SUPERBLOCK_SIZE,
  fail,
  formatKey,
  parseSuperblock,
  type Superblock,
} from './btrfs-format.js';
import { ChunkMap, TreeReader, parseChunk, parseSysChunkArray, type Chunk, type LeafItem, type TreeRoot } from './btrfs-tree.js';

/*
 * Used-block map of a single-device Btrfs, read from its trees.
 *
 * Layout references: the kernel's include/uapi/linux/btrfs_tree.h, fs/btrfs/tree-checker.c and
 * volumes.c, btrfs-progs kernel-shared/ctree.h, and the Btrfs documentation's on-disk format.
 * Allocation lives in the extent tree: every allocated byte range (data and metadata) has an
 * EXTENT_ITEM or METADATA_ITEM, keyed by its logical address. The chunk tree (bootstrapped from
 * the superblock's sys_chunk_array) maps logical addresses to places on the device: SINGLE
 * chunks once, DUP chunks twice. Used is: the first MiB (reserved for boot loaders, it holds
 * the primary superblock), every superblock mirror inside the device, every system chunk, and
 * every extent translated to each of its copies. Free space inside block groups and space no
 * chunk covers restore as zeros.
 *
 * Cross-checks that make a wrong map unlikely rather than merely detected by checksums: the
 * block groups match the chunks one to one (start, length, type); the bytes the extents add up
 * to in each block group equal that block group's `used`, and in total the superblock's
 * bytes_used. The log tree (log_root set) holds blocks the extent tree does not record, so a
 * filesystem with one is refused.
 *
 * With the block-group-tree feature the block group items live in their own tree. They serve
 * only the cross-checks above (the extents always come from the extent tree), so misreading
 * them could refuse a good filesystem but not drop data from the map. btrfs-progs 6.2 here
 * cannot make such a filesystem; btrfs.test.ts converts one by hand (btrfs check passes it).
 */

const MiB = 1024 * 1024;
const ROOT_ITEM_MIN_SIZE = 239;
const EXTENT_ITEM_MIN_SIZE = 24;
const EXTENT_FLAG_TREE_BLOCK = 2n;

interface BlockGroup {
  logical: number;
  length: number;
  used: number;
  flags: number;
}

interface Allocation {
  /**
   * Allocated logical ranges in key order, neighbours in one chunk joined into one run (a big
   * filesystem has millions of extents, mostly packed back to back).
   */
  runs: Array<{ logical: number; length: number; chunk: Chunk }>;
  /** Bytes allocated in each chunk, and in all. */
  usedByChunk: Map<Chunk, number>;
  total: number;
  blockGroups: BlockGroup[];
  /** The end of the last extent seen, to refuse overlaps. */
  lastEnd: number;
}

export const mapBtrfsUsedBlocks: UsedBlockMapper = async (volume: VolumeReader): Promise<Extent[]> => {
  if (volume.size < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE) fail(`the volume (${volume.size} bytes) is too small to hold a superblock`);
  const raw = new Uint8Array(SUPERBLOCK_SIZE);
  await volume.read(raw, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE);
  const sb = parseSuperblock(raw, volume.size);
  const { chunks, chunkTreeUuid } = await readChunkTree(volume, sb);
  const reader = new TreeReader(volume, sb, chunks, chunkTreeUuid);
  const roots = await findRoots(reader, sb);
  const allocation: Allocation = { runs: [], usedByChunk: new Map(), total: 0, blockGroups: [], lastEnd: 0 };
  await reader.walk(roots.extent, (item) => collectExtentTreeItem(item, sb, chunks, allocation, !roots.blockGroup));
  if (roots.blockGroup) await reader.walk(roots.blockGroup, (item) => collectBlockGroupTreeItem(item, allocation));
  checkBlockGroups(chunks, allocation, sb);
  return usedRanges(sb, chunks, allocation);
};

/** The full chunk map: the chunk tree read through the system chunks, which it must repeat. */
async function readChunkTree(volume: VolumeReader, sb: Superblock): Promise<{ chunks: ChunkMap; chunkTreeUuid?: Uint8Array }> {
  const system = parseSysChunkArray(sb);
  const bootstrap = new TreeReader(volume, sb, new ChunkMap(system));
  const chunks: Chunk[] = [];
  let devItems = 0;
  await bootstrap.walk({ logical: sb.chunkRoot, level: sb.chunkRootLevel, generation: sb.chunkRootGeneration, name: 'chunk' }, (item) => {
    if (item.key.type === KEY_CHUNK_ITEM) {
      chunks.push(parseChunk(item.fields, item.offset, item.key, sb, item.size).chunk);
    } else if (item.key.type === KEY_DEV_ITEM && item.key.objectid === 1n) {
      if (item.key.offset !== sb.devid) fail(`the chunk tree has a device item for device ${item.key.offset}, not ${sb.devid}`);
      devItems++;
    } else {
      fail(`unexpected item ${formatKey(item.key)} in the chunk tree`);
    }
  });
  if (devItems !== 1) fail(`the chunk tree has ${devItems} device items, expected 1`);
  for (const sys of system) {
    const same = chunks.find((c) => c.logical === sys.logical);
    if (!same || same.length !== sys.length || same.type !== sys.type || same.stripes.join() !== sys.stripes.join()) fail(`the system chunk at logical ${sys.logical} differs between sys_chunk_array and the chunk tree`);
  }
  return { chunks: new ChunkMap(chunks), ...(bootstrap.chunkTreeUuid && { chunkTreeUuid: bootstrap.chunkTreeUuid }) };
}

/** The extent tree's root and, with the block-group-tree feature, the block group tree's, from the root tree. */
async function findRoots(reader: TreeReader, sb: Superblock): Promise<{ extent: TreeRoot; blockGroup?: TreeRoot }> {
  const found = new Map<bigint, TreeRoot>();
  await reader.walk({ logical: sb.rootTree, level: sb.rootLevel, generation: sb.generation, name: 'root' }, (item) => {
    const wanted = item.key.objectid === EXTENT_TREE_OBJECTID || (sb.blockGroupTree && item.key.objectid === BLOCK_GROUP_TREE_OBJECTID);
    if (item.key.type !== KEY_ROOT_ITEM || !wanted || item.key.offset !== 0n) return;
    const name = item.key.objectid === EXTENT_TREE_OBJECTID ? 'extent' : 'block group';
    if (item.size < ROOT_ITEM_MIN_SIZE) fail(`the ${name} tree's root item is ${item.size} bytes`);
    const level = item.fields.u8(item.offset + 238);
    if (level >= MAX_LEVEL) fail(`the ${name} tree's root level ${level} is not below ${MAX_LEVEL}`);
    found.set(item.key.objectid, { logical: item.fields.address(item.offset + 176, `${name} tree root`), level, generation: item.fields.u64(item.offset + 160), name });
  });
  const extent = found.get(EXTENT_TREE_OBJECTID) ?? fail('the root tree has no extent tree');
  if (!sb.blockGroupTree) return { extent };
  return { extent, blockGroup: found.get(BLOCK_GROUP_TREE_OBJECTID) ?? fail('the block-group-tree feature is set but the root tree has no block group tree') };
}

/** An extent tree item: an allocated extent, a block group (without the block group tree), or a back reference (ignored). */
function collectExtentTreeItem(item: LeafItem, sb: Superblock, chunks: ChunkMap, allocation: Allocation, blockGroupsHere: boolean): void {
  const { key } = item;
  if (key.type === KEY_BLOCK_GROUP_ITEM) {
    if (!blockGroupsHere) fail(`a block group item ${formatKey(key)} is in the extent tree although the block group tree holds them`);
    allocation.blockGroups.push(parseBlockGroup(item));
    return;
  }
  if (key.type !== KEY_EXTENT_ITEM && key.type !== KEY_METADATA_ITEM) return;
  if (item.size < EXTENT_ITEM_MIN_SIZE) fail(`extent item ${formatKey(key)} is ${item.size} bytes (old v0 extent items are not supported)`);
  const logical = address(key.objectid, 'extent address');
  const flags = item.fields.u64(item.offset + 16);
  let length: number;
  if (key.type === KEY_METADATA_ITEM) {
    if (key.offset >= BigInt(MAX_LEVEL)) fail(`metadata item ${formatKey(key)} has level ${key.offset}`);
    length = sb.nodeSize;
  } else {
    length = address(key.offset, 'extent length');
    if (flags & EXTENT_FLAG_TREE_BLOCK && length !== sb.nodeSize) fail(`tree block extent ${formatKey(key)} is not ${sb.nodeSize} bytes`);
  }
  if (length === 0 || logical % sb.sectorSize !== 0 || length % sb.sectorSize !== 0) fail(`extent ${formatKey(key)} is empty or not sector-aligned`);
  if (logical < allocation.lastEnd) fail(`extent ${formatKey(key)} overlaps the previous extent (ending at ${allocation.lastEnd})`);
  allocation.lastEnd = logical + length;
  addRun(allocation, logical, length, chunks.find(logical, length, `extent ${formatKey(key)}`));
}

function addRun(allocation: Allocation, logical: number, length: number, chunk: Chunk): void {
  allocation.usedByChunk.set(chunk, (allocation.usedByChunk.get(chunk) ?? 0) + length);
  allocation.total += length;
  const last = allocation.runs.at(-1);
  if (last && last.chunk === chunk && last.logical + last.length === logical) last.length += length;
  else allocation.runs.push({ logical, length, chunk });
}

function collectBlockGroupTreeItem(item: LeafItem, allocation: Allocation): void {
  if (item.key.type !== KEY_BLOCK_GROUP_ITEM) fail(`unexpected item ${formatKey(item.key)} in the block group tree`);
  allocation.blockGroups.push(parseBlockGroup(item));
}

function parseBlockGroup(item: LeafItem): BlockGroup {
  if (item.size !== 24) fail(`block group item ${formatKey(item.key)} is ${item.size} bytes, not 24`);
  const f = item.fields;
  if (f.u64(item.offset + 8) !== FIRST_CHUNK_TREE_OBJECTID) fail(`block group item ${formatKey(item.key)} names chunk objectid ${f.u64(item.offset + 8)}`);
  const flags = f.u64(item.offset + 16);
  if (flags > 0xffffffffn) fail(`block group item ${formatKey(item.key)} has unknown flags 0x${flags.toString(16)}`);
  return { logical: address(item.key.objectid, 'block group address'), length: address(item.key.offset, 'block group length'), used: f.address(item.offset, 'block group used'), flags: Number(flags) };
}

function address(value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} ${value} is too large`);
  return Number(value);
}

/** Block groups and chunks match one to one, and the extents add up to each group's `used` and the superblock's bytes_used. */
function checkBlockGroups(chunks: ChunkMap, allocation: Allocation, sb: Superblock): void {
  const groups = new Map<number, BlockGroup>();
  for (const group of allocation.blockGroups) {
    if (groups.has(group.logical)) fail(`two block groups at logical ${group.logical}`);
    groups.set(group.logical, group);
  }
  if (groups.size !== chunks.chunks.length) fail(`${groups.size} block groups for ${chunks.chunks.length} chunks`);
  const { usedByChunk, total } = allocation;
  for (const chunk of chunks.chunks) {
    const group = groups.get(chunk.logical) ?? fail(`the chunk at logical ${chunk.logical} has no block group`);
    if (group.length !== chunk.length || group.flags !== chunk.type) fail(`the block group at logical ${chunk.logical} (length ${group.length}, flags 0x${group.flags.toString(16)}) does not match its chunk (length ${chunk.length}, type 0x${chunk.type.toString(16)})`);
    const used = usedByChunk.get(chunk) ?? 0;
    if (used !== group.used) fail(`the block group at logical ${chunk.logical} says ${group.used} bytes are used, its extents add up to ${used}`);
  }
  if (total !== sb.bytesUsed) fail(`the superblock says ${sb.bytesUsed} bytes are used, the extents add up to ${total}`);
}

/** Physical ranges in use: the reserved first MiB, superblock mirrors, system chunks and every copy of every extent. */
function usedRanges(sb: Superblock, chunks: ChunkMap, allocation: Allocation): Extent[] {
  const ranges: Extent[] = [{ offset: 0, length: Math.min(MiB, sb.deviceSize) }];
  for (const mirror of SUPERBLOCK_MIRRORS) if (mirror + SUPERBLOCK_SIZE <= sb.deviceSize) ranges.push({ offset: mirror, length: SUPERBLOCK_SIZE });
  for (const chunk of chunks.chunks) {
    if (chunk.type & BLOCK_GROUP_SYSTEM) for (const stripe of chunk.stripes) ranges.push({ offset: stripe, length: chunk.length });
  }
  for (const { logical, length, chunk } of allocation.runs) {
    for (const stripe of chunk.stripes) ranges.push({ offset: stripe + (logical - chunk.logical), length });
  }
  return mergeExtents(ranges);
}
