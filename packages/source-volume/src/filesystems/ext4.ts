import type { Extent } from '@cairn/core';
import type { UsedBlockMapper, VolumeReader } from '../extents.js';
import { InconsistentMetadataError } from './inconsistent.js';

/*
 * Used-block map of ext2/ext3/ext4, read from the block bitmaps of the block groups.
 *
 * Layout references: the kernel's fs/ext4/ext4.h (struct ext4_super_block, ext4_group_desc),
 * fs/ext4/super.c (ext4_group_desc_csum, descriptor_loc, ext4_check_descriptors) and
 * e2fsprogs lib/ext2fs/closefs.c (ext2fs_super_and_bgd_loc2). Nothing is guessed: anything the
 * mapper does not understand, or that does not add up, is an InconsistentMetadataError and the
 * volume is imaged exactly.
 *
 * A mounted (or frozen) journalled filesystem has needs_recovery set; it is mapped only when the
 * journal superblock shows an empty journal (s_start == 0: everything checkpointed, so the
 * bitmaps are current), as after fsfreeze. Journals on an external device are refused.
 */

const SUPERBLOCK_OFFSET = 1024;
const SUPERBLOCK_SIZE = 1024;
const EXT4_MAGIC = 0xef53;

const STATE_VALID = 0x0001;
const STATE_ERROR = 0x0002;

const COMPAT_HAS_JOURNAL = 0x0004;
const COMPAT_SPARSE_SUPER2 = 0x0200;

const INCOMPAT_FILETYPE = 0x0002;
const INCOMPAT_RECOVER = 0x0004;
const INCOMPAT_JOURNAL_DEV = 0x0008;
const INCOMPAT_META_BG = 0x0010;
const INCOMPAT_EXTENTS = 0x0040;
const INCOMPAT_64BIT = 0x0080;
const INCOMPAT_MMP = 0x0100;
const INCOMPAT_FLEX_BG = 0x0200;
const INCOMPAT_EA_INODE = 0x0400;
const INCOMPAT_CSUM_SEED = 0x2000;
const INCOMPAT_LARGEDIR = 0x4000;
const INCOMPAT_INLINE_DATA = 0x8000;
const INCOMPAT_ENCRYPT = 0x10000;
const INCOMPAT_CASEFOLD = 0x20000;
/** INCOMPAT features whose meaning for block allocation is understood (RECOVER is checked against the journal, JOURNAL_DEV refused separately). */
const INCOMPAT_UNDERSTOOD =
  INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_JOURNAL_DEV | INCOMPAT_META_BG | INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_MMP |
  INCOMPAT_FLEX_BG | INCOMPAT_EA_INODE | INCOMPAT_CSUM_SEED | INCOMPAT_LARGEDIR | INCOMPAT_INLINE_DATA | INCOMPAT_ENCRYPT | INCOMPAT_CASEFOLD;

const RO_COMPAT_SPARSE_SUPER = 0x0001;
const RO_COMPAT_GDT_CSUM = 0x0010;
const RO_COMPAT_HAS_SNAPSHOT = 0x0080;
const RO_COMPAT_BIGALLOC = 0x0200;
const RO_COMPAT_METADATA_CSUM = 0x0400;
/**
 * RO_COMPAT features that leave the block bitmaps meaning "block in use": sparse_super,
 * large_file, btree_dir, huge_file, gdt_csum, dir_nlink, extra_isize, quota, metadata_csum,
 * readonly, project, shared_blocks, verity, orphan_present. Snapshots, bigalloc (bits are
 * clusters) and replica are not understood.
 */
const RO_COMPAT_UNDERSTOOD = 0x0001 | 0x0002 | 0x0004 | 0x0008 | 0x0010 | 0x0020 | 0x0040 | 0x0100 | 0x0400 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000;

const BG_BLOCK_UNINIT = 0x0002;

/** Offset of bg_checksum in a group descriptor, and the end of bg_block_bitmap_csum_hi. */
const BG_CHECKSUM_OFFSET = 0x1e;
const BG_BLOCK_BITMAP_CSUM_HI_END = 0x3a;
const BG_ITABLE_UNUSED_HI_END = 0x34;

/** Bitmap reads are batched: neighbours closer than this are read in one call, up to MAX_BATCH bytes. */
const MAX_GAP_BYTES = 64 * 1024;
const MAX_BATCH_BYTES = 8 * 1024 * 1024;

function fail(message: string): never {
  throw new InconsistentMetadataError(`ext4: ${message}`);
}

// ---------------------------------------------------------------------------------------------
// Checksums, as the kernel computes them: raw table updates without the final inversion.

function makeTable(polynomial: number): Uint32Array {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ polynomial : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
}

const CRC32C_TABLE = makeTable(0x82f63b78);
const CRC16_TABLE = makeTable(0xa001);

/** The kernel's crc32c_le(crc, data): no pre- or post-inversion. */
export function crc32cUpdate(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  let c = crc >>> 0;
  for (let i = start; i < end; i++) c = CRC32C_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

/** The kernel's crc16(crc, data) (CRC-16/ARC polynomial, reflected), no inversion. */
export function crc16Update(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  let c = crc & 0xffff;
  for (let i = start; i < end; i++) c = (CRC16_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8)) & 0xffff;
  return c;
}

// ---------------------------------------------------------------------------------------------
// Superblock

interface Superblock {
  blockSize: number;
  blocksCount: number;
  firstDataBlock: number;
  blocksPerGroup: number;
  inodesPerGroup: number;
  inodeSize: number;
  /** INCOMPAT_RECOVER: the journal must be looked at before the bitmaps are trusted. */
  needsRecovery: boolean;
  /** s_journal_inum when needsRecovery (internal journals only), else 0. */
  journalInode: number;
  groupCount: number;
  descSize: number;
  descPerBlock: number;
  /** Blocks the group descriptor table takes (without reserved GDT blocks). */
  gdtBlocks: number;
  reservedGdtBlocks: number;
  firstMetaBg: number;
  /** Block that holds the primary superblock. */
  superblockBlock: number;
  uuid: Uint8Array;
  csumSeed: number;
  sparseSuper: boolean;
  sparseSuper2: boolean;
  backupGroups: [number, number];
  flexBg: boolean;
  metaBg: boolean;
  is64: boolean;
  metadataCsum: boolean;
  gdtCsum: boolean;
}

/** Little-endian reads of the superblock's fields by offset. */
interface SuperblockFields {
  sb: Uint8Array;
  u16(at: number): number;
  u32(at: number): number;
}

/** Reads and checks the superblock: magic, features, checksum, state, geometry, descriptors, journal, in that order. */
function parseSuperblock(sb: Uint8Array, volumeSize: number): Superblock {
  const view = new DataView(sb.buffer, sb.byteOffset, sb.byteLength);
  const fields: SuperblockFields = { sb, u16: (at) => view.getUint16(at, true), u32: (at) => view.getUint32(at, true) };
  if (fields.u16(0x38) !== EXT4_MAGIC) fail(`bad superblock magic 0x${fields.u16(0x38).toString(16)} (expected 0xef53)`);
  const features = checkFeatures(fields);
  if (features.metadataCsum) checkSuperblockChecksum(fields);
  checkState(fields.u16(0x3a));
  const geometry = parseGeometry(fields, features, volumeSize);
  const layout = parseDescriptorLayout(fields, features, geometry);
  const journalInode = features.needsRecovery ? parseJournalInode(fields, features.compat, geometry.inodesCount) : 0;
  const uuid = sb.slice(0x68, 0x78);
  return {
    ...geometry,
    ...layout,
    needsRecovery: features.needsRecovery,
    journalInode,
    superblockBlock: Math.floor(SUPERBLOCK_OFFSET / geometry.blockSize),
    uuid,
    csumSeed: features.incompat & INCOMPAT_CSUM_SEED ? fields.u32(0x270) : crc32cUpdate(0xffffffff, uuid),
    sparseSuper: (features.roCompat & RO_COMPAT_SPARSE_SUPER) !== 0,
    sparseSuper2: (features.compat & COMPAT_SPARSE_SUPER2) !== 0,
    backupGroups: [fields.u32(0x24c), fields.u32(0x250)],
    flexBg: (features.incompat & INCOMPAT_FLEX_BG) !== 0,
    is64: features.is64,
    metadataCsum: features.metadataCsum,
    gdtCsum: !features.metadataCsum && (features.roCompat & RO_COMPAT_GDT_CSUM) !== 0,
  };
}

interface Features {
  revLevel: number;
  compat: number;
  incompat: number;
  roCompat: number;
  needsRecovery: boolean;
  is64: boolean;
  metadataCsum: boolean;
}

/** The revision and feature flags; anything not understood is refused. */
function checkFeatures({ u32 }: SuperblockFields): Features {
  const revLevel = u32(0x4c);
  // Revisions 0 (original) and 1 (dynamic) are all there are; e2fsprogs refuses anything newer.
  if (revLevel > 1) fail(`unknown revision level ${revLevel} (s_rev_level)`);
  const compat = revLevel >= 1 ? u32(0x5c) : 0;
  const incompat = revLevel >= 1 ? u32(0x60) : 0;
  const roCompat = revLevel >= 1 ? u32(0x64) : 0;

  if (incompat & INCOMPAT_JOURNAL_DEV) fail('this is an external journal device, not a filesystem with block groups');
  const unknownIncompat = (incompat & ~INCOMPAT_UNDERSTOOD) >>> 0;
  if (unknownIncompat) fail(`unsupported INCOMPAT features 0x${unknownIncompat.toString(16)}`);
  if (roCompat & RO_COMPAT_BIGALLOC) fail('bigalloc is not supported (bitmap bits are clusters)');
  if (roCompat & RO_COMPAT_HAS_SNAPSHOT) fail('snapshots (has_snapshot) are not supported');
  const unknownRoCompat = (roCompat & ~RO_COMPAT_UNDERSTOOD) >>> 0;
  if (unknownRoCompat) fail(`unsupported RO_COMPAT features 0x${unknownRoCompat.toString(16)}`);
  return {
    revLevel,
    compat,
    incompat,
    roCompat,
    // needs_recovery is set on every mounted journalled filesystem; whether the journal really
    // holds anything to replay is decided from the journal itself (checkJournalIsEmpty).
    needsRecovery: (incompat & INCOMPAT_RECOVER) !== 0,
    is64: (incompat & INCOMPAT_64BIT) !== 0,
    metadataCsum: (roCompat & RO_COMPAT_METADATA_CSUM) !== 0,
  };
}

function checkSuperblockChecksum({ sb, u32 }: SuperblockFields): void {
  if (sb[0x175] !== 1) fail(`unknown metadata checksum type ${sb[0x175]}`);
  const expected = u32(0x3fc);
  const actual = crc32cUpdate(0xffffffff, sb, 0, 0x3fc);
  if (actual !== expected) fail(`superblock checksum mismatch (stored 0x${expected.toString(16)}, computed 0x${actual.toString(16)})`);
}

function checkState(state: number): void {
  if (state & STATE_ERROR) fail('the filesystem is marked as having errors (s_state); run e2fsck');
  if (!(state & STATE_VALID)) fail('the filesystem was not cleanly unmounted or is mounted (s_state lacks VALID_FS): the bitmaps may be stale');
}

/** Block size, counts and groups, checked against each other and the volume. */
function parseGeometry({ u16, u32 }: SuperblockFields, features: Features, volumeSize: number) {
  const logBlockSize = u32(0x18);
  if (logBlockSize > 6) fail(`invalid block size (s_log_block_size ${logBlockSize})`);
  const blockSize = 1024 << logBlockSize;
  // Without bigalloc a cluster is a block; e2fsck and the kernel call anything else corrupt.
  const logClusterSize = u32(0x1c);
  if (logClusterSize !== logBlockSize) fail(`cluster size (s_log_cluster_size ${logClusterSize}) differs from the block size (s_log_block_size ${logBlockSize}) without bigalloc`);
  const blocksCount = u32(0x04) + (features.is64 ? u32(0x150) * 2 ** 32 : 0);
  const firstDataBlock = u32(0x14);
  const blocksPerGroup = u32(0x20);
  const clustersPerGroup = u32(0x24);
  const inodesPerGroup = u32(0x28);
  const inodesCount = u32(0x00);
  const inodeSize = features.revLevel >= 1 ? u16(0x58) : 128;

  if (!Number.isSafeInteger(blocksCount * blockSize)) fail(`blocks count ${blocksCount} is too large`);
  const expectedFirst = blockSize === 1024 ? 1 : 0;
  if (firstDataBlock !== expectedFirst) fail(`first data block is ${firstDataBlock}, expected ${expectedFirst} for ${blockSize}-byte blocks`);
  if (blocksCount <= firstDataBlock) fail(`blocks count ${blocksCount} is not past the first data block`);
  if (blocksPerGroup === 0 || blocksPerGroup % 8 !== 0 || blocksPerGroup > 8 * blockSize) fail(`invalid blocks per group ${blocksPerGroup}`);
  if (clustersPerGroup !== blocksPerGroup) fail(`clusters per group ${clustersPerGroup} differs from blocks per group ${blocksPerGroup} without bigalloc`);
  if (inodesPerGroup === 0 || inodesPerGroup > 8 * blockSize) fail(`invalid inodes per group ${inodesPerGroup}`);
  if (inodeSize < 128 || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0) fail(`invalid inode size ${inodeSize}`);
  if (blocksCount * blockSize > volumeSize) {
    fail(`the filesystem is ${blocksCount * blockSize} bytes (${blocksCount} blocks of ${blockSize}) but the volume holds only ${volumeSize}`);
  }
  const groupCount = Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup);
  if (groupCount * inodesPerGroup !== inodesCount) {
    fail(`inodes count ${inodesCount} is not ${groupCount} groups × ${inodesPerGroup} inodes per group`);
  }
  return { blockSize, blocksCount, firstDataBlock, blocksPerGroup, inodesPerGroup, inodesCount, inodeSize, groupCount };
}

/** Where the group descriptors are: their size, how many blocks they take, meta_bg and reserved GDT blocks. */
function parseDescriptorLayout({ u16, u32 }: SuperblockFields, features: Features, geometry: { blockSize: number; groupCount: number }) {
  let descSize = 32;
  if (features.is64) {
    descSize = u16(0xfe);
    if (descSize < 64 || descSize > 1024 || (descSize & (descSize - 1)) !== 0) fail(`invalid group descriptor size ${descSize} with 64bit`);
  }
  const descPerBlock = geometry.blockSize / descSize;
  const gdtBlocks = Math.ceil(geometry.groupCount / descPerBlock);
  const metaBg = (features.incompat & INCOMPAT_META_BG) !== 0;
  const firstMetaBg = metaBg ? u32(0x104) : 0;
  if (metaBg && firstMetaBg > gdtBlocks) fail(`first meta block group ${firstMetaBg} is past the ${gdtBlocks} descriptor blocks`);
  const reservedGdtBlocks = features.revLevel >= 1 ? u16(0xce) : 0;
  if (reservedGdtBlocks > geometry.blockSize / 4) fail(`invalid reserved GDT blocks count ${reservedGdtBlocks}`);
  return { descSize, descPerBlock, gdtBlocks, metaBg, firstMetaBg, reservedGdtBlocks };
}

/** The internal journal's inode, when the journal may need recovery; an external journal cannot be checked. */
function parseJournalInode({ sb, u32 }: SuperblockFields, compat: number, inodesCount: number): number {
  if (!(compat & COMPAT_HAS_JOURNAL)) fail('needs_recovery is set but the filesystem has no journal (has_journal is not set)');
  const journalUuid = sb.subarray(0xd0, 0xe0);
  const journalDev = u32(0xe4);
  if (journalDev !== 0 || journalUuid.some((byte) => byte !== 0)) {
    fail(
      `the journal needs recovery and is on an external journal device (s_journal_dev 0x${journalDev.toString(16)}), ` +
        'which cannot be checked from this volume: the on-disk bitmaps may be stale',
    );
  }
  const journalInode = u32(0xe0);
  if (journalInode === 0) fail('needs_recovery is set but the superblock names no journal inode (s_journal_inum is 0)');
  if (journalInode > inodesCount) fail(`journal inode ${journalInode} is past the ${inodesCount} inodes of the filesystem`);
  return journalInode;
}

// ---------------------------------------------------------------------------------------------
// Group geometry

function isPowerOf(n: number, base: number): boolean {
  let p = base;
  while (p < n) p *= base;
  return p === n;
}

/** ext4_bg_has_super: does this group hold a superblock (and, outside meta_bg, a GDT) copy? */
function groupHasSuper(sb: Superblock, group: number): boolean {
  if (group === 0) return true;
  if (sb.sparseSuper2) return group === sb.backupGroups[0] || group === sb.backupGroups[1];
  if (group <= 1 || !sb.sparseSuper) return true;
  if (group % 2 === 0) return false;
  return isPowerOf(group, 3) || isPowerOf(group, 5) || isPowerOf(group, 7);
}

function groupFirstBlock(sb: Superblock, group: number): number {
  return sb.firstDataBlock + group * sb.blocksPerGroup;
}

function groupBlockCount(sb: Superblock, group: number): number {
  return Math.min(sb.blocksPerGroup, sb.blocksCount - groupFirstBlock(sb, group));
}

/** descriptor_loc: the block holding descriptor block `nr` of the primary table. */
function descriptorBlock(sb: Superblock, nr: number): number {
  if (!sb.metaBg || nr < sb.firstMetaBg) return sb.superblockBlock + 1 + nr;
  const group = nr * sb.descPerBlock;
  return groupFirstBlock(sb, group) + (groupHasSuper(sb, group) ? 1 : 0);
}

/**
 * Blocks a group's own base metadata takes (ext2fs_super_and_bgd_loc2, as a superset): its
 * superblock copy, the old-style GDT copy with the reserved GDT blocks, and the meta_bg
 * descriptor copy. Pushed as [start, end) block ranges.
 */
function pushBaseMetadata(sb: Superblock, group: number, ranges: number[]): void {
  // With 1 KiB blocks group 0 starts at block 1, the superblock; block 0 is added separately.
  const first = groupFirstBlock(sb, group);
  const hasSuper = groupHasSuper(sb, group);
  const metaGroup = Math.floor(group / sb.descPerBlock);
  let length = 0;
  if (hasSuper) length = 1;
  if (!sb.metaBg || metaGroup < sb.firstMetaBg) {
    if (hasSuper) length += (sb.metaBg ? sb.firstMetaBg : sb.gdtBlocks) + sb.reservedGdtBlocks;
    if (length > 0) ranges.push(first, first + length);
  } else {
    if (hasSuper) ranges.push(first, first + 1);
    const inMeta = group % sb.descPerBlock;
    if (inMeta === 0 || inMeta === 1 || inMeta === sb.descPerBlock - 1) {
      const at = first + (hasSuper ? 1 : 0);
      ranges.push(at, at + 1);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

async function readExact(volume: VolumeReader, offset: number, length: number): Promise<Uint8Array> {
  if (offset < 0 || offset + length > volume.size) fail(`read of ${length} bytes at ${offset} is past the end of the volume (${volume.size} bytes)`);
  const buffer = new Uint8Array(length);
  await volume.read(buffer, offset, length);
  return buffer;
}

interface GroupDesc {
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  flags: number;
  blockBitmapCsum: number;
  /** Inodes at the end of the group's table never handed out (bg_itable_unused). */
  itableUnused: number;
}

async function readDescriptorTable(volume: VolumeReader, sb: Superblock): Promise<Uint8Array> {
  const { blockSize, gdtBlocks } = sb;
  const table = new Uint8Array(gdtBlocks * blockSize);
  // Descriptor blocks are read in runs of consecutive blocks: one run outside meta_bg.
  let nr = 0;
  while (nr < gdtBlocks) {
    const start = descriptorBlock(sb, nr);
    let count = 1;
    while (nr + count < gdtBlocks && descriptorBlock(sb, nr + count) === start + count) count++;
    if (start + count > sb.blocksCount) fail(`group descriptor block ${nr} at block ${start} is past the end of the filesystem`);
    const bytes = await readExact(volume, start * blockSize, count * blockSize);
    table.set(bytes, nr * blockSize);
    nr += count;
  }
  return table;
}

const groupLe = new Uint8Array(4);
const groupLeView = new DataView(groupLe.buffer);
const zero = new Uint8Array(2);

function groupDescChecksum(sb: Superblock, desc: Uint8Array, group: number): number {
  groupLeView.setUint32(0, group, true);
  if (sb.metadataCsum) {
    let crc = crc32cUpdate(sb.csumSeed, groupLe);
    crc = crc32cUpdate(crc, desc, 0, BG_CHECKSUM_OFFSET);
    crc = crc32cUpdate(crc, zero);
    if (BG_CHECKSUM_OFFSET + 2 < sb.descSize) crc = crc32cUpdate(crc, desc, BG_CHECKSUM_OFFSET + 2, sb.descSize);
    return crc & 0xffff;
  }
  let crc = crc16Update(0xffff, sb.uuid);
  crc = crc16Update(crc, groupLe);
  crc = crc16Update(crc, desc, 0, BG_CHECKSUM_OFFSET);
  if (sb.is64 && BG_CHECKSUM_OFFSET + 2 < sb.descSize) crc = crc16Update(crc, desc, BG_CHECKSUM_OFFSET + 2, sb.descSize);
  return crc;
}

function parseDescriptors(sb: Superblock, table: Uint8Array): GroupDesc[] {
  const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const inodeTableBlocks = Math.ceil((sb.inodesPerGroup * sb.inodeSize) / sb.blockSize);
  const descs: GroupDesc[] = [];
  for (let group = 0; group < sb.groupCount; group++) {
    const at = group * sb.descSize;
    const lo = (off: number) => view.getUint32(at + off, true);
    const hi = (off: number) => (sb.is64 ? view.getUint32(at + off, true) * 2 ** 32 : 0);
    const desc: GroupDesc = {
      blockBitmap: lo(0x00) + hi(0x20),
      inodeBitmap: lo(0x04) + hi(0x24),
      inodeTable: lo(0x08) + hi(0x28),
      flags: view.getUint16(at + 0x12, true),
      blockBitmapCsum: view.getUint16(at + 0x18, true) + (sb.descSize >= BG_BLOCK_BITMAP_CSUM_HI_END ? view.getUint16(at + 0x38, true) * 0x10000 : 0),
      itableUnused: view.getUint16(at + 0x1c, true) + (sb.descSize >= BG_ITABLE_UNUSED_HI_END ? view.getUint16(at + 0x32, true) * 0x10000 : 0),
    };

    if (sb.metadataCsum || sb.gdtCsum) {
      const stored = view.getUint16(at + BG_CHECKSUM_OFFSET, true);
      const computed = groupDescChecksum(sb, table.subarray(at, at + sb.descSize), group);
      if (stored !== computed) {
        fail(`group ${group} descriptor checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`);
      }
    }

    // ext4_check_descriptors: without flex_bg the metadata lies inside its own group.
    const low = sb.flexBg ? sb.firstDataBlock : groupFirstBlock(sb, group);
    const high = sb.flexBg ? sb.blocksCount : groupFirstBlock(sb, group) + groupBlockCount(sb, group);
    const where = sb.flexBg ? 'the filesystem' : `group ${group}`;
    const check = (name: string, block: number, count: number) => {
      if (block + count > sb.blocksCount) fail(`group ${group} ${name} at block ${block} is past the end of the filesystem (${sb.blocksCount} blocks)`);
      if (block < low || block + count > high) fail(`group ${group} ${name} at block ${block} (${count} blocks) lies outside ${where}`);
      if (block <= sb.superblockBlock + sb.gdtBlocks && block + count > sb.superblockBlock && !sb.metaBg) {
        fail(`group ${group} ${name} at block ${block} overlaps the primary superblock or group descriptors`);
      }
    };
    check('block bitmap', desc.blockBitmap, 1);
    check('inode bitmap', desc.inodeBitmap, 1);
    check('inode table', desc.inodeTable, inodeTableBlocks);
    if ((sb.metadataCsum || sb.gdtCsum) && desc.itableUnused > sb.inodesPerGroup) {
      fail(`group ${group} says ${desc.itableUnused} inodes of its table are unused, more than the ${sb.inodesPerGroup} it has`);
    }
    descs.push(desc);
  }
  return descs;
}

interface MetadataPiece {
  start: number;
  count: number;
  what: string;
}

/**
 * Every group's bitmaps and inode table, split by the group whose range holds them (flex_bg
 * puts them anywhere). Refuses metadata that overlaps other metadata.
 */
function locateGroupMetadata(sb: Superblock, descs: GroupDesc[], inodeTableBlocks: number): MetadataPiece[][] {
  const pieces: MetadataPiece[] = [];
  for (const [group, desc] of descs.entries()) {
    pieces.push({ start: desc.blockBitmap, count: 1, what: `block bitmap of group ${group}` });
    pieces.push({ start: desc.inodeBitmap, count: 1, what: `inode bitmap of group ${group}` });
    pieces.push({ start: desc.inodeTable, count: inodeTableBlocks, what: `inode table of group ${group}` });
  }
  pieces.sort((a, b) => a.start - b.start);
  for (let i = 1; i < pieces.length; i++) {
    const previous = pieces[i - 1]!;
    if (pieces[i]!.start < previous.start + previous.count) fail(`the ${pieces[i]!.what} at block ${pieces[i]!.start} overlaps the ${previous.what}`);
  }
  const byGroup: MetadataPiece[][] = new Array(sb.groupCount);
  for (const piece of pieces) {
    let start = piece.start;
    const end = piece.start + piece.count;
    while (start < end) {
      const group = Math.floor((start - sb.firstDataBlock) / sb.blocksPerGroup);
      const groupEnd = groupFirstBlock(sb, group) + groupBlockCount(sb, group);
      const stop = Math.min(end, groupEnd);
      (byGroup[group] ??= []).push({ start, count: stop - start, what: piece.what });
      start = stop;
    }
  }
  return byGroup;
}

// ---------------------------------------------------------------------------------------------
// Bitmaps

/**
 * Pushes the runs of set bits among the first `bits` bits of `bitmap` as [start, end) block
 * ranges offset by `base`, merging with the last range when it ends exactly at the run.
 */
function pushBitmapRuns(bitmap: Uint8Array, bits: number, base: number, ranges: number[]): void {
  let runStart = -1;
  const fullBytes = bits >>> 3;
  const close = (end: number) => {
    if (ranges.length > 0 && ranges[ranges.length - 1] === base + runStart) ranges[ranges.length - 1] = base + end;
    else ranges.push(base + runStart, base + end);
    runStart = -1;
  };
  for (let i = 0; i < fullBytes; i++) {
    const byte = bitmap[i]!;
    if (byte === 0) {
      if (runStart >= 0) close(i << 3);
    } else if (byte === 0xff) {
      if (runStart < 0) runStart = i << 3;
    } else {
      for (let b = 0; b < 8; b++) {
        const bit = (i << 3) + b;
        if (byte & (1 << b)) {
          if (runStart < 0) runStart = bit;
        } else if (runStart >= 0) close(bit);
      }
    }
  }
  for (let bit = fullBytes << 3; bit < bits; bit++) {
    if (bitmap[bit >>> 3]! & (1 << (bit & 7))) {
      if (runStart < 0) runStart = bit;
    } else if (runStart >= 0) close(bit);
  }
  if (runStart >= 0) close(bits);
}

interface BitmapRead {
  group: number;
  block: number;
}

/** Reads the given bitmap blocks in batches of nearby blocks (flex_bg packs them together) and hands each to `use`. */
async function readBitmaps(volume: VolumeReader, sb: Superblock, wanted: BitmapRead[], use: (group: number, bitmap: Uint8Array) => void): Promise<void> {
  const { blockSize } = sb;
  const sorted = [...wanted].sort((a, b) => a.block - b.block);
  const maxGapBlocks = Math.max(0, Math.floor(MAX_GAP_BYTES / blockSize));
  const maxBatchBlocks = Math.max(1, Math.floor(MAX_BATCH_BYTES / blockSize));
  let i = 0;
  while (i < sorted.length) {
    const first = sorted[i]!.block;
    let j = i + 1;
    while (j < sorted.length && sorted[j]!.block - sorted[j - 1]!.block <= maxGapBlocks + 1 && sorted[j]!.block - first < maxBatchBlocks) j++;
    const last = sorted[j - 1]!.block;
    const bytes = await readExact(volume, first * blockSize, (last - first + 1) * blockSize);
    for (let k = i; k < j; k++) {
      const offset = (sorted[k]!.block - first) * blockSize;
      use(sorted[k]!.group, bytes.subarray(offset, offset + blockSize));
    }
    i = j;
  }
}

// ---------------------------------------------------------------------------------------------
// Journal
//
// needs_recovery is set for as long as a journalled filesystem is mounted. What decides whether
// the on-disk bitmaps are current is the journal superblock: s_start == 0 means every committed
// transaction has been written back to its home location (checkpointed), so there is nothing to
// replay. That is the test the kernel (jbd2_journal_recover) and e2fsck make. References:
// include/linux/jbd2.h (journal_superblock_t), fs/ext4/ext4_extents.h, fs/ext4/inode.c
// (ext4_inode_csum), fs/ext4/extents.c (ext4_extent_block_csum).

const BG_INODE_UNINIT = 0x0001;

const INODE_EXTENTS_FL = 0x00080000;
const INODE_INLINE_DATA_FL = 0x10000000;
const S_IFMT = 0xf000;
const S_IFREG = 0x8000;
const GOOD_OLD_INODE_SIZE = 128;
const INODE_CHECKSUM_LO = 0x7c;
const INODE_CHECKSUM_HI = 0x82;

const EXTENT_MAGIC = 0xf30a;
const EXTENT_MAX_DEPTH = 5;
const EXTENT_INIT_MAX_LEN = 32768;

const JBD2_MAGIC = 0xc03b3998;
const JBD2_SUPERBLOCK_V1 = 3;
const JBD2_SUPERBLOCK_V2 = 4;
const JBD2_SUPERBLOCK_SIZE = 1024;
const JBD2_CHECKSUM_OFFSET = 0xfc;
const JBD2_CRC32C_CHKSUM = 4;
const JBD2_INCOMPAT_CSUM_V2 = 0x08;
const JBD2_INCOMPAT_CSUM_V3 = 0x10;
/** revoke, 64bit, async_commit, csum_v2, csum_v3, fast_commit: the kernel refuses a journal with any other. */
const JBD2_INCOMPAT_KNOWN = 0x01 | 0x02 | 0x04 | JBD2_INCOMPAT_CSUM_V2 | JBD2_INCOMPAT_CSUM_V3 | 0x20;

/** A block the journal check read, which the block bitmap must mark as in use. */
interface JournalBlock {
  block: number;
  what: string;
}

const le32 = new Uint8Array(4);
const le32View = new DataView(le32.buffer);
function crc32cLe32(crc: number, value: number): number {
  le32View.setUint32(0, value, true);
  return crc32cUpdate(crc, le32);
}

/** A block of the filesystem that may hold inode data: past the primary superblock and inside the filesystem. */
function checkDataBlock(sb: Superblock, block: number, what: string): void {
  if (!Number.isSafeInteger(block) || block <= sb.superblockBlock || block < sb.firstDataBlock || block >= sb.blocksCount) {
    fail(`the ${what} at block ${block} lies outside the filesystem's data blocks (${sb.superblockBlock + 1}..${sb.blocksCount - 1})`);
  }
}

/**
 * Finds the physical block holding logical block 0 of an extent-mapped inode, following index
 * nodes (each read, checked and checksummed) down to the leaf.
 */
async function firstBlockFromExtents(volume: VolumeReader, sb: Superblock, iBlock: Uint8Array, inodeCsumSeed: number, read: JournalBlock[]): Promise<number> {
  let node = iBlock;
  let where = 'journal inode';
  let expectedDepth = -1;
  for (let level = 0; ; level++) {
    const view = new DataView(node.buffer, node.byteOffset, node.byteLength);
    const magic = view.getUint16(0, true);
    const entries = view.getUint16(2, true);
    const max = view.getUint16(4, true);
    const depth = view.getUint16(6, true);
    if (magic !== EXTENT_MAGIC) fail(`bad extent header magic 0x${magic.toString(16)} in the ${where} (expected 0xf30a)`);
    if (max === 0 || 12 + 12 * max > node.byteLength) fail(`extent header in the ${where} claims ${max} entries, more than fit`);
    if (entries === 0 || entries > max) fail(`extent header in the ${where} has ${entries} entries (of at most ${max})`);
    if (depth > EXTENT_MAX_DEPTH) fail(`extent tree depth ${depth} in the ${where} exceeds ${EXTENT_MAX_DEPTH}`);
    if (expectedDepth >= 0 && depth !== expectedDepth) fail(`extent node in the ${where} has depth ${depth}, expected ${expectedDepth}`);
    if (level > 0 && sb.metadataCsum) {
      const tail = 12 + 12 * max;
      if (tail + 4 > node.byteLength) fail(`extent block in the ${where} has no room for its checksum`);
      const stored = view.getUint32(tail, true);
      const computed = crc32cUpdate(inodeCsumSeed, node, 0, tail);
      if (stored !== computed) fail(`extent block checksum mismatch in the ${where} (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`);
    }
    // Entries are sorted by logical block; logical block 0 is in the first one or nowhere.
    const first = 12;
    const logical = view.getUint32(first, true);
    if (logical !== 0) fail(`the journal has no block 0 (its first extent starts at logical block ${logical})`);
    for (let i = 1; i < entries; i++) {
      if (view.getUint32(first + 12 * i, true) <= view.getUint32(first + 12 * (i - 1), true)) fail(`extent entries in the ${where} are not sorted`);
    }
    if (depth === 0) {
      const length = view.getUint16(first + 4, true);
      const start = view.getUint16(first + 6, true) * 2 ** 32 + view.getUint32(first + 8, true);
      if (length === 0) fail(`the first extent of the journal in the ${where} is empty`);
      if (length > EXTENT_INIT_MAX_LEN) fail(`the first extent of the journal is unwritten (uninitialised), which a journal never is`);
      checkDataBlock(sb, start, 'first journal extent');
      checkDataBlock(sb, start + length - 1, 'end of the first journal extent');
      return start;
    }
    const leaf = view.getUint16(first + 8, true) * 2 ** 32 + view.getUint32(first + 4, true);
    checkDataBlock(sb, leaf, `journal extent tree block (depth ${depth - 1})`);
    if (read.some((item) => item.block === leaf)) fail(`the journal extent tree refers to block ${leaf} twice (a loop)`);
    read.push({ block: leaf, what: `journal extent tree block (depth ${depth - 1})` });
    node = await readExact(volume, leaf * sb.blockSize, sb.blockSize);
    where = `journal extent tree block ${leaf}`;
    expectedDepth = depth - 1;
  }
}

/**
 * With needs_recovery set: reads the journal inode and the journal superblock, and refuses
 * unless the journal is empty (s_start == 0). Returns the blocks it read, which the block
 * bitmap must mark as in use.
 */
async function checkJournalIsEmpty(volume: VolumeReader, sb: Superblock, descs: GroupDesc[]): Promise<JournalBlock[]> {
  const ino = sb.journalInode;
  const inode = await readJournalInode(volume, sb, descs, ino);
  const what = `journal inode ${ino}`;
  const inodeCsumSeed = sb.metadataCsum ? checkInodeChecksum(sb, ino, inode, what) : 0;
  const { journalBlocks, first, read } = await journalStart(volume, sb, inode, inodeCsumSeed, what);
  await checkJournalSuperblock(volume, sb, first, journalBlocks);
  return read;
}

/** The journal inode's bytes, from its group's inode table. */
async function readJournalInode(volume: VolumeReader, sb: Superblock, descs: GroupDesc[], ino: number): Promise<Uint8Array> {
  const group = Math.floor((ino - 1) / sb.inodesPerGroup);
  const index = (ino - 1) % sb.inodesPerGroup;
  const desc = descs[group];
  if (!desc) fail(`journal inode ${ino} is in group ${group}, past the ${sb.groupCount} groups`);
  if ((sb.metadataCsum || sb.gdtCsum) && desc.flags & BG_INODE_UNINIT) fail(`journal inode ${ino} is in group ${group}, whose inode table is uninitialised`);
  // The inode table location was checked by parseDescriptors; the index is below inodes_per_group.
  return readExact(volume, desc.inodeTable * sb.blockSize + index * sb.inodeSize, sb.inodeSize);
}

/** Checks an inode's crc32c (metadata_csum); returns the inode's checksum seed, which its extent blocks use too. */
function checkInodeChecksum(sb: Superblock, ino: number, inode: Uint8Array, what: string): number {
  const view = new DataView(inode.buffer, inode.byteOffset, inode.byteLength);
  const inodeCsumSeed = crc32cLe32(crc32cLe32(sb.csumSeed, ino), view.getUint32(0x64, true));
  const extraIsize = sb.inodeSize > GOOD_OLD_INODE_SIZE ? view.getUint16(0x80, true) : 0;
  if (GOOD_OLD_INODE_SIZE + extraIsize > sb.inodeSize || extraIsize % 4 !== 0) fail(`${what} has an invalid extra inode size ${extraIsize}`);
  const hasHi = sb.inodeSize > GOOD_OLD_INODE_SIZE && INODE_CHECKSUM_HI + 2 <= GOOD_OLD_INODE_SIZE + extraIsize;
  let crc = crc32cUpdate(inodeCsumSeed, inode, 0, INODE_CHECKSUM_LO);
  crc = crc32cUpdate(crc, zero);
  crc = crc32cUpdate(crc, inode, INODE_CHECKSUM_LO + 2, GOOD_OLD_INODE_SIZE);
  if (sb.inodeSize > GOOD_OLD_INODE_SIZE) {
    crc = crc32cUpdate(crc, inode, GOOD_OLD_INODE_SIZE, INODE_CHECKSUM_HI);
    if (hasHi) crc = crc32cUpdate(crc, zero);
    crc = crc32cUpdate(crc, inode, hasHi ? INODE_CHECKSUM_HI + 2 : INODE_CHECKSUM_HI, sb.inodeSize);
  }
  let stored = view.getUint16(INODE_CHECKSUM_LO, true);
  if (hasHi) stored += view.getUint16(INODE_CHECKSUM_HI, true) * 0x10000;
  else crc &= 0xffff;
  if (stored !== crc >>> 0) fail(`${what} checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${(crc >>> 0).toString(16)})`);
  return inodeCsumSeed;
}

/** The journal's size in blocks and its first block (the journal superblock), with the blocks read to find it. */
async function journalStart(volume: VolumeReader, sb: Superblock, inode: Uint8Array, inodeCsumSeed: number, what: string): Promise<{ journalBlocks: number; first: number; read: JournalBlock[] }> {
  const view = new DataView(inode.buffer, inode.byteOffset, inode.byteLength);
  const mode = view.getUint16(0x00, true);
  if ((mode & S_IFMT) !== S_IFREG) fail(`${what} is not a regular file (mode 0${mode.toString(8)})`);
  if (view.getUint16(0x1a, true) === 0) fail(`${what} is not in use (links count 0)`);
  const size = view.getUint32(0x04, true) + view.getUint32(0x6c, true) * 2 ** 32;
  const journalBlocks = Math.floor(size / sb.blockSize);
  if (journalBlocks < 2) fail(`${what} is ${size} bytes, too small for a journal`);
  const flags = view.getUint32(0x20, true);
  if (flags & INODE_INLINE_DATA_FL) fail(`${what} has inline data, which a journal never has`);
  const iBlock = inode.subarray(0x28, 0x28 + 60);
  const read: JournalBlock[] = [];
  let first: number;
  if (flags & INODE_EXTENTS_FL) {
    first = await firstBlockFromExtents(volume, sb, iBlock, inodeCsumSeed, read);
  } else {
    first = view.getUint32(0x28, true);
    if (first === 0) fail(`${what} has no block 0 (i_block[0] is 0)`);
    checkDataBlock(sb, first, 'journal superblock (i_block[0])');
  }
  read.push({ block: first, what: 'journal superblock' });
  return { journalBlocks, first, read };
}

/** Refuses a journal superblock that is not valid, records an error, or holds transactions not yet written back. */
async function checkJournalSuperblock(volume: VolumeReader, sb: Superblock, first: number, journalBlocks: number): Promise<void> {
  const jsb = await readExact(volume, first * sb.blockSize, JBD2_SUPERBLOCK_SIZE);
  const jview = new DataView(jsb.buffer, jsb.byteOffset, jsb.byteLength);
  const at = `the journal superblock at block ${first}`;
  const magic = jview.getUint32(0, false);
  if (magic !== JBD2_MAGIC) fail(`bad magic 0x${magic.toString(16)} in ${at} (expected 0xc03b3998)`);
  const blockType = jview.getUint32(4, false);
  if (blockType !== JBD2_SUPERBLOCK_V1 && blockType !== JBD2_SUPERBLOCK_V2) fail(`${at} has block type ${blockType} (expected 3 or 4)`);
  if (blockType === JBD2_SUPERBLOCK_V2) {
    const incompat = jview.getUint32(40, false);
    const unknown = (incompat & ~JBD2_INCOMPAT_KNOWN) >>> 0;
    if (unknown) fail(`${at} has unsupported incompatible features 0x${unknown.toString(16)}`);
    if (incompat & (JBD2_INCOMPAT_CSUM_V2 | JBD2_INCOMPAT_CSUM_V3)) {
      if (jsb[0x50] !== JBD2_CRC32C_CHKSUM) fail(`${at} has unknown checksum type ${jsb[0x50]}`);
      const stored = jview.getUint32(JBD2_CHECKSUM_OFFSET, false);
      let computed = crc32cUpdate(0xffffffff, jsb, 0, JBD2_CHECKSUM_OFFSET);
      computed = crc32cUpdate(computed, new Uint8Array(4));
      computed = crc32cUpdate(computed, jsb, JBD2_CHECKSUM_OFFSET + 4, JBD2_SUPERBLOCK_SIZE);
      if (stored !== computed) fail(`checksum mismatch in ${at} (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`);
    }
  }
  const blockSize = jview.getUint32(12, false);
  const maxLen = jview.getUint32(16, false);
  const firstLog = jview.getUint32(20, false);
  const start = jview.getUint32(28, false);
  const errno = jview.getInt32(32, false);
  if (blockSize !== sb.blockSize) fail(`${at} has block size ${blockSize}, the filesystem ${sb.blockSize}`);
  if (maxLen < 2 || maxLen > journalBlocks) fail(`${at} claims ${maxLen} blocks but the journal inode holds ${journalBlocks}`);
  if (firstLog < 1 || firstLog >= maxLen) fail(`${at} has its first log block ${firstLog} outside 1..${maxLen - 1}`);
  if (errno !== 0) fail(`the journal records an error (s_errno ${errno}): the filesystem needs e2fsck`);
  if (start !== 0) {
    if (start < firstLog || start >= maxLen) fail(`${at} has its log start ${start} outside ${firstLog}..${maxLen - 1}`);
    fail('the journal holds transactions not yet written back (mounted and not frozen?); freeze it with fsfreeze or unmount it');
  }
}

// ---------------------------------------------------------------------------------------------

/** Sorts [start, end) pairs and merges overlapping or touching ones. */
function mergeRanges(flat: number[]): Array<[number, number]> {
  const pairs: Array<[number, number]> = [];
  for (let i = 0; i < flat.length; i += 2) if (flat[i + 1]! > flat[i]!) pairs.push([flat[i]!, flat[i + 1]!]);
  pairs.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const merged: Array<[number, number]> = [];
  for (const pair of pairs) {
    const last = merged[merged.length - 1];
    if (last && pair[0] <= last[1]) last[1] = Math.max(last[1], pair[1]);
    else merged.push([pair[0], pair[1]]);
  }
  return merged;
}

/**
 * The blocks at the start of a group's inode table that can hold inodes in use. With group
 * descriptor checksums the kernel hands out a group's inodes from the start of its table and
 * keeps the count never handed out (bg_itable_unused; the whole table with INODE_UNINIT), and
 * neither it nor e2fsck reads past them; the rest is not data: on a large disk it is most of the
 * metadata (32 GiB of a 2 TiB disk at 16 KiB per inode). Without checksums the whole table counts.
 */
function usedInodeTableBlocks(sb: Superblock, desc: GroupDesc, inodeTableBlocks: number): number {
  if (!(sb.metadataCsum || sb.gdtCsum)) return inodeTableBlocks;
  if (desc.flags & BG_INODE_UNINIT) return 0;
  return Math.ceil(((sb.inodesPerGroup - desc.itableUnused) * sb.inodeSize) / sb.blockSize);
}

/** Removes sorted, disjoint [start, end) `holes` from sorted, merged ranges. */
function subtractRanges(ranges: Array<[number, number]>, holes: Array<[number, number]>): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let h = 0;
  for (const [start, end] of ranges) {
    let from = start;
    while (h < holes.length && holes[h]![1] <= from) h++;
    for (let k = h; k < holes.length && holes[k]![0] < end; k++) {
      if (holes[k]![0] > from) out.push([from, holes[k]![0]]);
      from = Math.max(from, holes[k]![1]);
    }
    if (from < end) out.push([from, end]);
  }
  return out;
}

/** BLOCK_UNINIT is honoured only with group descriptor checksums, as the kernel does. */
function honourUninitGroup(sb: Superblock, desc: GroupDesc): boolean {
  return (sb.metadataCsum || sb.gdtCsum) && (desc.flags & BG_BLOCK_UNINIT) !== 0;
}

/**
 * The blocks of an ext2/ext3/ext4 filesystem in use: allocated blocks per the block bitmaps,
 * plus all static metadata (boot block, superblocks, descriptor tables, bitmaps, inode tables).
 */
export const mapExt4UsedBlocks: UsedBlockMapper = async (volume) => {
  if (volume.size < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE) fail(`the volume (${volume.size} bytes) is too small to hold a superblock`);
  const sb = parseSuperblock(await readExact(volume, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE), volume.size);
  const descs = parseDescriptors(sb, await readDescriptorTable(volume, sb));
  const inodeTableBlocks = Math.ceil((sb.inodesPerGroup * sb.inodeSize) / sb.blockSize);
  const metadataByGroup = locateGroupMetadata(sb, descs, inodeTableBlocks);
  const journalBlocks = sb.needsRecovery ? await checkJournalIsEmpty(volume, sb, descs) : [];
  const journalByGroup = new Map<number, JournalBlock[]>();
  for (const item of journalBlocks) {
    const group = Math.floor((item.block - sb.firstDataBlock) / sb.blocksPerGroup);
    if (honourUninitGroup(sb, descs[group]!)) fail(`the ${item.what} at block ${item.block} lies in group ${group}, whose block bitmap is uninitialised`);
    const list = journalByGroup.get(group) ?? [];
    list.push(item);
    journalByGroup.set(group, list);
  }

  // Metadata that is in use whatever the bitmaps say (a superset of what they should say).
  const fixed: number[] = [0, Math.max(1, sb.superblockBlock + 1)]; // boot block(s) and the primary superblock
  for (let nr = 0; nr < sb.gdtBlocks; nr++) {
    const block = descriptorBlock(sb, nr);
    fixed.push(block, block + 1);
  }
  for (let group = 0; group < sb.groupCount; group++) {
    const desc = descs[group]!;
    pushBaseMetadata(sb, group, fixed);
    fixed.push(desc.blockBitmap, desc.blockBitmap + 1, desc.inodeBitmap, desc.inodeBitmap + 1, desc.inodeTable, desc.inodeTable + inodeTableBlocks);
  }

  // Allocated blocks per the bitmaps. A BLOCK_UNINIT group uses only its metadata, already in `fixed`.
  const wanted: BitmapRead[] = [];
  for (let group = 0; group < sb.groupCount; group++) {
    if (honourUninitGroup(sb, descs[group]!)) continue;
    wanted.push({ group, block: descs[group]!.blockBitmap });
  }
  const runsByGroup: number[][] = new Array(sb.groupCount);
  const bitmapCsumBytes = sb.blocksPerGroup / 8;
  await readBitmaps(volume, sb, wanted, (group, bitmap) => {
    if (sb.metadataCsum) {
      const stored = descs[group]!.blockBitmapCsum;
      let computed = crc32cUpdate(sb.csumSeed, bitmap, 0, bitmapCsumBytes);
      if (sb.descSize < BG_BLOCK_BITMAP_CSUM_HI_END) computed &= 0xffff;
      if (stored !== computed) fail(`group ${group} block bitmap checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`);
    }
    // As the kernel's ext4_validate_block_bitmap: a bitmap that does not mark the bitmaps and
    // inode tables stored in its own group is stale or corrupt.
    for (const item of metadataByGroup[group] ?? []) {
      const offset = item.start - groupFirstBlock(sb, group);
      for (let bit = offset; bit < offset + item.count; bit++) {
        if (!(bitmap[bit >>> 3]! & (1 << (bit & 7)))) {
          fail(`group ${group} block bitmap does not mark block ${item.start + bit - offset} (${item.what}) as in use: the bitmap is stale or corrupt`);
        }
      }
    }
    // The journal blocks that were read to decide that the bitmaps are current are in use.
    for (const item of journalByGroup.get(group) ?? []) {
      const bit = item.block - groupFirstBlock(sb, group);
      if (!(bitmap[bit >>> 3]! & (1 << (bit & 7)))) fail(`group ${group} block bitmap does not mark block ${item.block} (${item.what}) as in use`);
    }
    const runs: number[] = [];
    // Bits past the end of the filesystem (the last group's padding) are not blocks.
    pushBitmapRuns(bitmap, groupBlockCount(sb, group), groupFirstBlock(sb, group), runs);
    runsByGroup[group] = runs;
  });

  const all = fixed;
  for (const runs of runsByGroup) if (runs) for (const value of runs) all.push(value);
  return toExtents(sb, subtractRanges(mergeRanges(all), unusedInodeTableEnds(sb, descs, inodeTableBlocks)));
};

/** The never-used ends of the inode tables, sorted: in `fixed` and the bitmaps whole, left out of the map. */
function unusedInodeTableEnds(sb: Superblock, descs: GroupDesc[], inodeTableBlocks: number): Array<[number, number]> {
  return descs
    .map((desc): [number, number] => [desc.inodeTable + usedInodeTableBlocks(sb, desc, inodeTableBlocks), desc.inodeTable + inodeTableBlocks])
    .filter(([start, end]) => end > start)
    .sort((a, b) => a[0] - b[0]);
}

/** Block ranges as byte extents, clipped to the filesystem. */
function toExtents(sb: Superblock, ranges: Array<[number, number]>): Extent[] {
  const extents: Extent[] = [];
  for (const [start, end] of ranges) {
    const clippedEnd = Math.min(end, sb.blocksCount);
    if (clippedEnd > start) extents.push({ offset: start * sb.blockSize, length: (clippedEnd - start) * sb.blockSize });
  }
  return extents;
}
