import { crc32cUpdate } from './ext4.js';
import { InconsistentMetadataError } from './inconsistent.js';

/*
 * The Btrfs on-disk structures the used-block map needs: the superblock, tree node headers,
 * keys and the items of the chunk and extent trees. Offsets follow the kernel's uapi
 * btrfs_tree.h (struct btrfs_super_block, btrfs_header, btrfs_item, btrfs_key_ptr,
 * btrfs_chunk, btrfs_root_item, btrfs_block_group_item). All integers are little-endian.
 */

export const SUPERBLOCK_OFFSET = 0x10000;
export const SUPERBLOCK_SIZE = 4096;
/** Primary superblock and its mirrors (btrfs_sb_offset: 64 KiB, then 16 KiB << 12 * n). */
export const SUPERBLOCK_MIRRORS = [0x10000, 64 * 1024 * 1024, 256 * 1024 * 1024 * 1024, 1024 * 1024 * 1024 * 1024 * 1024];
const MAGIC = '_BHRfS_M';

export const HEADER_SIZE = 0x65;
export const ITEM_SIZE = 25;
export const KEY_PTR_SIZE = 33;
export const MAX_LEVEL = 8;

export const KEY_ROOT_ITEM = 132;
export const KEY_EXTENT_ITEM = 168;
export const KEY_METADATA_ITEM = 169;
export const KEY_BLOCK_GROUP_ITEM = 192;
export const KEY_DEV_ITEM = 216;
export const KEY_CHUNK_ITEM = 228;

export const EXTENT_TREE_OBJECTID = 2n;
export const BLOCK_GROUP_TREE_OBJECTID = 11n;
export const FIRST_CHUNK_TREE_OBJECTID = 256n;

export const BLOCK_GROUP_SYSTEM = 1 << 1;
export const BLOCK_GROUP_DUP = 1 << 5;
/** RAID0, RAID1, RAID10, RAID5, RAID6, RAID1C3, RAID1C4: profiles that spread a chunk over devices. */
export const RAID_PROFILES: ReadonlyArray<[number, string]> = [
  [1 << 3, 'raid0'],
  [1 << 4, 'raid1'],
  [1 << 6, 'raid10'],
  [1 << 7, 'raid5'],
  [1 << 8, 'raid6'],
  [1 << 9, 'raid1c3'],
  [1 << 10, 'raid1c4'],
];

// Feature flags (ctree.h / uapi btrfs.h).
const INCOMPAT_METADATA_UUID = 1n << 10n;
const INCOMPAT_ZONED = 1n << 12n;
const INCOMPAT_EXTENT_TREE_V2 = 1n << 13n;
const INCOMPAT_RAID_STRIPE_TREE = 1n << 14n;
/**
 * INCOMPAT features that leave "every allocated byte has an EXTENT_ITEM or METADATA_ITEM in
 * the extent tree, inside a chunk of the chunk tree" true: mixed_backref, default_subvol,
 * mixed_groups, compress_lzo, compress_zstd, big_metadata, extended_iref, raid56 (refused per
 * chunk), skinny_metadata, no_holes, metadata_uuid, raid1c34 (refused per chunk), simple_quota.
 * Zoned, extent tree v2 and the raid stripe tree change allocation and are refused.
 */
const INCOMPAT_UNDERSTOOD = 0x7ffn | (1n << 11n) | (1n << 16n);
/** free_space_tree, free_space_tree_valid, verity, block_group_tree. */
const COMPAT_RO_UNDERSTOOD = 0xfn;
export const COMPAT_RO_BLOCK_GROUP_TREE = 1n << 3n;

const SUPER_FLAG_ERROR = 1n << 2n;
const SUPER_FLAG_METADUMP = 1n << 33n;
const SUPER_FLAG_METADUMP_V2 = 1n << 34n;
/** CHANGING_FSID, CHANGING_FSID_V2, CHANGING_BG_TREE, CHANGING_DATA_CSUM, CHANGING_META_CSUM: a conversion was interrupted. */
const SUPER_FLAGS_CHANGING = (1n << 35n) | (1n << 36n) | (1n << 38n) | (1n << 39n) | (1n << 40n);

const CSUM_TYPES = ['crc32c', 'xxhash64', 'sha256', 'blake2b'];

export function fail(message: string): never {
  throw new InconsistentMetadataError(`btrfs: ${message}`);
}

/** The Btrfs checksum (crc32c, csum_type 0) of bytes 32 to the end, as stored in the first four bytes. */
export function btrfsCrc32c(block: Uint8Array): number {
  return ~crc32cUpdate(0xffffffff, block, 32, block.length) >>> 0;
}

/** Little-endian fields of a buffer; 64-bit ones as bigint, or as a number when they must be addresses. */
export class Fields {
  readonly view: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  u8(at: number): number {
    return this.view.getUint8(at);
  }
  u16(at: number): number {
    return this.view.getUint16(at, true);
  }
  u32(at: number): number {
    return this.view.getUint32(at, true);
  }
  u64(at: number): bigint {
    return this.view.getBigUint64(at, true);
  }
  /** A 64-bit byte count or address, which must fit a JavaScript number exactly. */
  address(at: number, what: string): number {
    const value = this.u64(at);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} ${value} is too large`);
    return Number(value);
  }
}

export interface Key {
  objectid: bigint;
  type: number;
  offset: bigint;
}

export function readKey(fields: Fields, at: number): Key {
  return { objectid: fields.u64(at), type: fields.u8(at + 8), offset: fields.u64(at + 9) };
}

export function compareKeys(a: Key, b: Key): number {
  if (a.objectid !== b.objectid) return a.objectid < b.objectid ? -1 : 1;
  if (a.type !== b.type) return a.type < b.type ? -1 : 1;
  if (a.offset !== b.offset) return a.offset < b.offset ? -1 : 1;
  return 0;
}

export const formatKey = (key: Key): string => `(${key.objectid} ${key.type} ${key.offset})`;

const isPowerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0;

export interface Superblock {
  /** The fsid tree blocks carry: metadata_uuid with the METADATA_UUID feature, else fsid. */
  metadataFsid: Uint8Array;
  generation: bigint;
  rootTree: number;
  rootLevel: number;
  chunkRoot: number;
  chunkRootLevel: number;
  chunkRootGeneration: bigint;
  bytesUsed: number;
  sectorSize: number;
  nodeSize: number;
  devid: bigint;
  /** The device's size as the filesystem knows it (dev_item.total_bytes). */
  deviceSize: number;
  blockGroupTree: boolean;
  /** The raw sys_chunk_array (sys_chunk_array_size bytes). */
  sysChunkArray: Uint8Array;
}

/** Reads and checks the primary superblock: magic, checksum, flags, features, geometry, device. */
export function parseSuperblock(sb: Uint8Array, volumeSize: number): Superblock {
  const f = new Fields(sb);
  if (new TextDecoder('latin1').decode(sb.subarray(0x40, 0x48)) !== MAGIC) fail('bad superblock magic');
  const csumType = f.u16(0xc4);
  if (csumType !== 0) fail(`checksum type ${CSUM_TYPES[csumType] ?? csumType} is not supported (only crc32c)`);
  const stored = f.u32(0);
  const computed = btrfsCrc32c(sb);
  if (stored !== computed) fail(`superblock checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`);
  if (f.u64(0x30) !== BigInt(SUPERBLOCK_OFFSET)) fail(`superblock bytenr ${f.u64(0x30)} is not ${SUPERBLOCK_OFFSET}`);
  checkFlagsAndFeatures(f);
  const { sectorSize, nodeSize } = checkGeometry(f);
  const deviceSize = checkDevice(f, volumeSize, sectorSize);
  const sysChunkArraySize = f.u32(0xa0);
  if (sysChunkArraySize > 2048 || sysChunkArraySize === 0) fail(`invalid sys_chunk_array_size ${sysChunkArraySize}`);
  const incompat = f.u64(0xbc);
  return {
    metadataFsid: sb.slice(...(incompat & INCOMPAT_METADATA_UUID ? [0x23b, 0x24b] : [0x20, 0x30])),
    generation: f.u64(0x48),
    rootTree: treeRootAddress(f, 0x50, 'root', sectorSize),
    rootLevel: treeRootLevel(f, 0xc6, 'root_level'),
    chunkRoot: treeRootAddress(f, 0x58, 'chunk_root', sectorSize),
    chunkRootLevel: treeRootLevel(f, 0xc7, 'chunk_root_level'),
    chunkRootGeneration: f.u64(0xa4),
    bytesUsed: f.address(0x78, 'bytes_used'),
    sectorSize,
    nodeSize,
    devid: f.u64(0xc9),
    deviceSize,
    blockGroupTree: (f.u64(0xb4) & COMPAT_RO_BLOCK_GROUP_TREE) !== 0n,
    sysChunkArray: sb.slice(0x32b, 0x32b + sysChunkArraySize),
  };
}

function checkFlagsAndFeatures(f: Fields): void {
  const flags = f.u64(0x38);
  if (flags & SUPER_FLAG_ERROR) fail('the filesystem is marked as having errors; run btrfs check');
  if (flags & (SUPER_FLAG_METADUMP | SUPER_FLAG_METADUMP_V2)) fail('this is a metadata dump (btrfs-image), not a filesystem with its data');
  if (flags & SUPER_FLAGS_CHANGING) fail(`a conversion was interrupted (superblock flags 0x${flags.toString(16)})`);
  const incompat = f.u64(0xbc);
  if (incompat & INCOMPAT_ZONED) fail('zoned Btrfs is not supported');
  if (incompat & INCOMPAT_EXTENT_TREE_V2) fail('extent tree v2 is not supported');
  if (incompat & INCOMPAT_RAID_STRIPE_TREE) fail('the raid stripe tree is not supported');
  const unknownIncompat = incompat & ~INCOMPAT_UNDERSTOOD;
  if (unknownIncompat) fail(`unsupported incompat features 0x${unknownIncompat.toString(16)}`);
  const unknownRo = f.u64(0xb4) & ~COMPAT_RO_UNDERSTOOD;
  if (unknownRo) fail(`unsupported compat_ro features 0x${unknownRo.toString(16)}`);
  const devices = f.u64(0x88);
  if (devices !== 1n) fail(`multi-device Btrfs (${devices} devices) is not supported`);
  if (f.u64(0x60) !== 0n) fail('log tree present (the filesystem was not unmounted cleanly after an fsync; mount it once to replay the log)');
}

function checkGeometry(f: Fields): { sectorSize: number; nodeSize: number } {
  const sectorSize = f.u32(0x90);
  const nodeSize = f.u32(0x94);
  if (!isPowerOfTwo(sectorSize) || sectorSize < 4096 || sectorSize > 65536) fail(`invalid sectorsize ${sectorSize}`);
  if (!isPowerOfTwo(nodeSize) || nodeSize < sectorSize || nodeSize > 65536) fail(`invalid nodesize ${nodeSize}`);
  return { sectorSize, nodeSize };
}

/** The one device: dev_item belongs to this filesystem and fits in the volume. */
function checkDevice(f: Fields, volumeSize: number, sectorSize: number): number {
  const totalBytes = f.address(0x70, 'total_bytes');
  if (totalBytes > volumeSize) fail(`total_bytes ${totalBytes} exceeds the volume size ${volumeSize}`);
  const deviceSize = f.address(0xc9 + 8, 'dev_item.total_bytes');
  if (deviceSize !== totalBytes) fail(`dev_item.total_bytes ${deviceSize} differs from total_bytes ${totalBytes} on a single-device filesystem`);
  if (deviceSize < 1024 * 1024 + sectorSize) fail(`device size ${deviceSize} is too small`);
  const metadataFsid = f.u64(0xbc) & INCOMPAT_METADATA_UUID ? 0x23b : 0x20;
  const devFsid = f.bytes.subarray(0xc9 + 82, 0xc9 + 98);
  if (!sameBytes(devFsid, f.bytes.subarray(metadataFsid, metadataFsid + 16))) fail('dev_item.fsid does not match the filesystem');
  return deviceSize;
}

function treeRootAddress(f: Fields, at: number, what: string, sectorSize: number): number {
  const address = f.address(at, what);
  if (address === 0 || address % sectorSize !== 0) fail(`${what} ${address} is not a sector-aligned address`);
  return address;
}

function treeRootLevel(f: Fields, at: number, what: string): number {
  const level = f.u8(at);
  if (level >= MAX_LEVEL) fail(`${what} ${level} is not below ${MAX_LEVEL}`);
  return level;
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
