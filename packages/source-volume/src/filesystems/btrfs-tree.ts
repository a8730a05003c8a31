import type { VolumeReader } from '../extents.js';
import {
  BLOCK_GROUP_DUP,
  BLOCK_GROUP_SYSTEM,
  FIRST_CHUNK_TREE_OBJECTID,
  Fields,
  HEADER_SIZE,
  ITEM_SIZE,
  KEY_CHUNK_ITEM,
  KEY_PTR_SIZE,
  MAX_LEVEL,
  RAID_PROFILES,
  btrfsCrc32c,
  compareKeys,
  fail,
  formatKey,
  readKey,
  sameBytes,
  type Key,
  type Superblock,
} from './btrfs-format.js';

/*
 * Logical → physical translation (the chunk map) and a verifying B-tree walker. Every node is
 * checked the way the kernel's tree-checker and read_tree_block check it before anything in
 * it is believed: checksum, bytenr, fsid, chunk tree uuid, level, generation, item count,
 * sorted keys (also across nodes), item data packed inside the leaf, and the first key of a
 * child equal to its parent's pointer key.
 */

const CHUNK_ITEM_SIZE = 48;
const STRIPE_SIZE = 32;
const KNOWN_BLOCK_GROUP_FLAGS = 0x7ff;

export interface Chunk {
  logical: number;
  length: number;
  type: number;
  /** Physical offset of each copy on the one device: one for SINGLE, two for DUP. */
  stripes: number[];
}

/** Parses the btrfs_chunk at `at` whose key is `key`; returns it and its size in bytes. */
export function parseChunk(f: Fields, at: number, key: Key, sb: Superblock, available: number): { chunk: Chunk; size: number } {
  if (key.objectid !== FIRST_CHUNK_TREE_OBJECTID || key.type !== KEY_CHUNK_ITEM) fail(`unexpected key ${formatKey(key)} where a chunk item belongs`);
  if (available < CHUNK_ITEM_SIZE) fail(`chunk item at logical ${key.offset} is truncated`);
  const numStripes = f.u16(at + 44);
  const size = CHUNK_ITEM_SIZE + numStripes * STRIPE_SIZE;
  if (numStripes === 0 || size > available) fail(`chunk item at logical ${key.offset} has ${numStripes} stripes in ${available} bytes`);
  const logical = keyAddress(key.offset, 'chunk logical address');
  const length = f.address(at, 'chunk length');
  const type = Number(f.u64(at + 24) & 0xffffffffn);
  if (f.u64(at + 24) > BigInt(KNOWN_BLOCK_GROUP_FLAGS) || (type & 7) === 0) fail(`chunk at logical ${logical} has an unknown type 0x${f.u64(at + 24).toString(16)}`);
  const raid = RAID_PROFILES.find(([bit]) => type & bit);
  if (raid) fail(`RAID profile ${raid[1]} (chunk at logical ${logical}) is not supported`);
  const copies = type & BLOCK_GROUP_DUP ? 2 : 1;
  if (numStripes !== copies) fail(`chunk at logical ${logical} has ${numStripes} stripes, expected ${copies}`);
  if (length === 0 || length % sb.sectorSize !== 0 || logical % sb.sectorSize !== 0) fail(`chunk at logical ${logical} (length ${length}) is not sector-aligned`);
  const stripeLength = Number(f.u64(at + 16));
  if (stripeLength === 0 || (stripeLength & (stripeLength - 1)) !== 0) fail(`chunk at logical ${logical} has an invalid stripe_len ${stripeLength}`);
  const stripes: number[] = [];
  for (let i = 0; i < numStripes; i++) {
    const stripe = at + CHUNK_ITEM_SIZE + i * STRIPE_SIZE;
    if (f.u64(stripe) !== sb.devid) fail(`chunk at logical ${logical} has a stripe on device ${f.u64(stripe)}, not ${sb.devid}`);
    const physical = f.address(stripe + 8, 'stripe offset');
    if (physical % sb.sectorSize !== 0 || physical + length > sb.deviceSize) fail(`chunk at logical ${logical}: stripe at ${physical} (+${length}) is unaligned or past the device's end ${sb.deviceSize}`);
    stripes.push(physical);
  }
  return { chunk: { logical, length, type, stripes }, size };
}

function keyAddress(value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} ${value} is too large`);
  return Number(value);
}

/** Chunks sorted by logical address, checked not to overlap logically or physically. */
export class ChunkMap {
  readonly chunks: Chunk[];

  constructor(chunks: Chunk[]) {
    this.chunks = [...chunks].sort((a, b) => a.logical - b.logical);
    for (let i = 1; i < this.chunks.length; i++) {
      const previous = this.chunks[i - 1]!;
      if (previous.logical + previous.length > this.chunks[i]!.logical) fail(`chunks at logical ${previous.logical} and ${this.chunks[i]!.logical} overlap`);
    }
    const physical = this.chunks.flatMap((c) => c.stripes.map((offset) => ({ offset, end: offset + c.length }))).sort((a, b) => a.offset - b.offset);
    for (let i = 1; i < physical.length; i++) {
      if (physical[i - 1]!.end > physical[i]!.offset) fail(`chunk stripes at physical ${physical[i - 1]!.offset} and ${physical[i]!.offset} overlap`);
    }
  }

  /** The chunk holding all of [logical, logical + length), or an error naming what. */
  find(logical: number, length: number, what: string): Chunk {
    let low = 0;
    let high = this.chunks.length - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const chunk = this.chunks[middle]!;
      if (logical < chunk.logical) high = middle - 1;
      else if (logical >= chunk.logical + chunk.length) low = middle + 1;
      else {
        if (logical + length > chunk.logical + chunk.length) fail(`${what} at logical ${logical} (+${length}) crosses the end of its chunk`);
        return chunk;
      }
    }
    return fail(`${what} at logical ${logical} lies in no chunk`);
  }
}

/** The chunks of sys_chunk_array: enough to read the chunk tree. */
export function parseSysChunkArray(sb: Superblock): Chunk[] {
  const f = new Fields(sb.sysChunkArray);
  const chunks: Chunk[] = [];
  let at = 0;
  while (at < sb.sysChunkArray.length) {
    if (sb.sysChunkArray.length - at < 17) fail('sys_chunk_array ends inside a key');
    const key = readKey(f, at);
    const { chunk, size } = parseChunk(f, at + 17, key, sb, sb.sysChunkArray.length - at - 17);
    if (!(chunk.type & BLOCK_GROUP_SYSTEM)) fail(`sys_chunk_array holds a chunk at logical ${chunk.logical} that is not a system chunk`);
    chunks.push(chunk);
    at += 17 + size;
  }
  return chunks;
}

export interface TreeRoot {
  logical: number;
  level: number;
  generation: bigint;
  name: string;
}

export interface LeafItem {
  key: Key;
  /** The leaf's fields; the item's data is at `offset`, `size` bytes. */
  fields: Fields;
  offset: number;
  size: number;
}

interface NodeExpectation {
  logical: number;
  level: number;
  generation: bigint;
  firstKey?: Key;
}

/** Reads and verifies tree nodes through a chunk map. */
export class TreeReader {
  #chunkTreeUuid: Uint8Array | undefined;

  /** `chunkTreeUuid`: the chunk root's, once the chunk tree has been read (by another reader). */
  constructor(
    private readonly volume: VolumeReader,
    private readonly sb: Superblock,
    private readonly chunks: ChunkMap,
    chunkTreeUuid?: Uint8Array,
  ) {
    this.#chunkTreeUuid = chunkTreeUuid;
  }

  /** The chunk tree uuid every node carries, known after the first node is read. */
  get chunkTreeUuid(): Uint8Array | undefined {
    return this.#chunkTreeUuid;
  }

  /** Calls `onItem` for every leaf item of the tree, in key order. */
  async walk(root: TreeRoot, onItem: (item: LeafItem) => void): Promise<void> {
    const state = { visited: new Set<number>(), lastKey: undefined as Key | undefined, tree: root.name };
    await this.#walkNode({ logical: root.logical, level: root.level, generation: root.generation }, state, onItem);
  }

  async #walkNode(expected: NodeExpectation, state: WalkState, onItem: (item: LeafItem) => void): Promise<void> {
    if (state.visited.has(expected.logical)) fail(`${state.tree} tree: node ${expected.logical} is reached twice`);
    state.visited.add(expected.logical);
    const node = await this.#readNode(expected, state.tree);
    const nritems = node.u32(0x60);
    if (expected.level === 0) return this.#visitLeaf(node, nritems, expected, state, onItem);
    for (let i = 0; i < nritems; i++) {
      const at = HEADER_SIZE + i * KEY_PTR_SIZE;
      const key = readKey(node, at);
      const child = node.address(at + 17, 'child pointer');
      const generation = node.u64(at + 25);
      if (i === 0 && expected.firstKey && compareKeys(key, expected.firstKey) !== 0) fail(`${state.tree} tree: node ${expected.logical} starts with ${formatKey(key)}, its parent says ${formatKey(expected.firstKey)}`);
      if (i > 0 && compareKeys(readKey(node, at - KEY_PTR_SIZE), key) >= 0) fail(`${state.tree} tree: keys of node ${expected.logical} are not sorted`);
      await this.#walkNode({ logical: child, level: expected.level - 1, generation, firstKey: key }, state, onItem);
    }
  }

  /** Checks every item of the leaf first (keys, data placement), then hands them out: nothing in a leaf is used before all of it is verified. */
  #visitLeaf(leaf: Fields, nritems: number, expected: NodeExpectation, state: WalkState, onItem: (item: LeafItem) => void): void {
    // Only a root may be an empty leaf (a tree with no items); below a node, a leaf holds at least its parent's key.
    if (nritems === 0 && expected.firstKey) fail(`${state.tree} tree: leaf ${expected.logical} is empty but has a parent`);
    const items: LeafItem[] = [];
    let dataEnd = this.sb.nodeSize - HEADER_SIZE;
    for (let i = 0; i < nritems; i++) {
      const at = HEADER_SIZE + i * ITEM_SIZE;
      const key = readKey(leaf, at);
      const offset = leaf.u32(at + 17);
      const size = leaf.u32(at + 21);
      if (i === 0 && expected.firstKey && compareKeys(key, expected.firstKey) !== 0) fail(`${state.tree} tree: leaf ${expected.logical} starts with ${formatKey(key)}, its parent says ${formatKey(expected.firstKey)}`);
      if (state.lastKey && compareKeys(state.lastKey, key) >= 0) fail(`${state.tree} tree: key ${formatKey(key)} in leaf ${expected.logical} is not after ${formatKey(state.lastKey)}`);
      // Item data is packed from the end of the leaf backwards, item 0 last (tree-checker's check_leaf).
      if (offset + size !== dataEnd || offset < nritems * ITEM_SIZE) fail(`${state.tree} tree: item ${i} of leaf ${expected.logical} has its data at ${offset} (+${size}), expected to end at ${dataEnd}`);
      dataEnd = offset;
      state.lastKey = key;
      items.push({ key, fields: leaf, offset: HEADER_SIZE + offset, size });
    }
    for (const item of items) onItem(item);
  }

  /**
   * Reads the node at a logical address from the first copy that verifies (DUP has two), with
   * the checks the kernel makes before it settles on a copy; what it checks only later (the
   * chunk tree uuid here, keys and items in the walk) refuses the whole filesystem instead.
   */
  async #readNode(expected: NodeExpectation, tree: string): Promise<Fields> {
    const { logical } = expected;
    if (logical % this.sb.sectorSize !== 0) fail(`${tree} tree: node address ${logical} is not sector-aligned`);
    const chunk = this.chunks.find(logical, this.sb.nodeSize, `${tree} tree node`);
    let firstProblem = '';
    for (const stripe of chunk.stripes) {
      const bytes = new Uint8Array(this.sb.nodeSize);
      await this.volume.read(bytes, stripe + (logical - chunk.logical), bytes.length);
      const node = new Fields(bytes);
      const problem = this.#nodeProblem(node, expected);
      if (problem === undefined) return this.#checkChunkTreeUuid(node, logical, tree);
      firstProblem ||= problem;
    }
    return fail(`${tree} tree: node ${logical}: ${firstProblem}`);
  }

  /** Every node carries the chunk tree's uuid; the first node read (the chunk root) sets it. */
  #checkChunkTreeUuid(node: Fields, logical: number, tree: string): Fields {
    const uuid = node.bytes.subarray(0x40, 0x50);
    this.#chunkTreeUuid ??= uuid.slice();
    if (!sameBytes(uuid, this.#chunkTreeUuid)) fail(`${tree} tree: node ${logical}: chunk tree uuid differs from the chunk root's`);
    return node;
  }

  /** What is wrong with a node read for `expected`, or undefined. */
  #nodeProblem(node: Fields, expected: NodeExpectation): string | undefined {
    const stored = node.u32(0);
    const computed = btrfsCrc32c(node.bytes);
    if (stored !== computed) return `checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`;
    if (node.u64(0x30) !== BigInt(expected.logical)) return `header bytenr ${node.u64(0x30)} differs from its address`;
    if (!sameBytes(node.bytes.subarray(0x20, 0x30), this.sb.metadataFsid)) return 'fsid does not match the superblock';
    const generation = node.u64(0x50);
    if (generation > this.sb.generation) return `generation ${generation} is newer than the superblock's ${this.sb.generation}`;
    if (generation !== expected.generation) return `generation ${generation}, its parent expects ${expected.generation}`;
    const level = node.u8(0x64);
    if (level !== expected.level || level >= MAX_LEVEL) return `level ${level}, expected ${expected.level}`;
    const nritems = node.u32(0x60);
    const capacity = Math.floor((this.sb.nodeSize - HEADER_SIZE) / (level === 0 ? ITEM_SIZE : KEY_PTR_SIZE));
    if (nritems > capacity || (level > 0 && nritems === 0)) return `${nritems} items do not fit a level ${level} node`;
    return undefined;
  }
}

interface WalkState {
  visited: Set<number>;
  lastKey: Key | undefined;
  tree: string;
}
