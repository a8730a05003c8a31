import { crc32 } from 'node:zlib';
import type { VolumeLayout } from '@cairn/core';

/**
 * Bytes probed from the start of a volume. Covers every signature looked for here, the
 * farthest being Btrfs's primary superblock at 64 KiB (and a swap header made on a 64 KiB-page
 * machine).
 */
export const PROBE_LENGTH = 68 * 1024;

export interface ProbeResult {
  partitionTable: VolumeLayout['partitionTable'];
  filesystem?: string;
  /** Logical sector size the content was laid out for, when it tells (a GPT header sits at LBA 1). */
  sectorSize: number;
}

function ascii(bytes: Uint8Array, offset: number, length: number): string {
  return offset + length <= bytes.length ? Buffer.from(bytes.buffer, bytes.byteOffset + offset, length).toString('latin1') : '';
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function hasBootSignature(head: Uint8Array): boolean {
  return head.length >= 512 && head[510] === 0x55 && head[511] === 0xaa;
}

const isPowerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

/** A GUID as GPT stores it: the first three groups little-endian. */
function formatGuid(bytes: Uint8Array): string {
  const hex = (from: number, to: number, reverse: boolean): string => {
    const part = Array.from(bytes.subarray(from, to), (b) => b.toString(16).padStart(2, '0'));
    return (reverse ? part.reverse() : part).join('');
  };
  return [hex(0, 4, true), hex(4, 6, true), hex(6, 8, true), hex(8, 10, false), hex(10, 16, false)].join('-');
}

/** A GPT header at LBA 1 whose CRC checks out; a stale or torn header is not a partition table. */
function probeGpt(head: Uint8Array, sectorSize: number): VolumeLayout['partitionTable'] | undefined {
  if (ascii(head, sectorSize, 8) !== 'EFI PART') return undefined;
  const header = head.subarray(sectorSize, sectorSize + sectorSize);
  const headerSize = view(header).getUint32(12, true);
  if (headerSize < 92 || headerSize > header.length) return undefined;
  const withoutCrc = Buffer.from(header.subarray(0, headerSize));
  withoutCrc.writeUInt32LE(0, 16);
  if (crc32(withoutCrc) !== view(header).getUint32(16, true)) return undefined;
  return { type: 'gpt', diskId: formatGuid(header.subarray(56, 72)) };
}

/**
 * An MBR: boot signature, every entry's status byte valid, and at least one used entry.
 * Filesystem boot sectors (FAT, NTFS) also end in 0x55AA, so they are ruled out first.
 */
function probeMbr(head: Uint8Array): VolumeLayout['partitionTable'] | undefined {
  if (!hasBootSignature(head)) return undefined;
  const data = view(head);
  let used = 0;
  for (let entry = 446; entry < 510; entry += 16) {
    const status = head[entry]!;
    if (status !== 0x00 && status !== 0x80) return undefined;
    const type = head[entry + 4]!;
    const sectors = data.getUint32(entry + 12, true);
    if (type !== 0 && sectors !== 0) used++;
  }
  if (used === 0) return undefined;
  return { type: 'mbr', diskId: data.getUint32(440, true).toString(16).padStart(8, '0') };
}

/**
 * FAT12/16/32 from a plausible BIOS parameter block. The variant follows from the cluster
 * count, as the FAT specification defines it, not from the informational type string.
 */
function probeFat(head: Uint8Array): string | undefined {
  if (!hasBootSignature(head)) return undefined;
  const data = view(head);
  const bytesPerSector = data.getUint16(11, true);
  const sectorsPerCluster = head[13]!;
  const reservedSectors = data.getUint16(14, true);
  const fatCount = head[16]!;
  const rootEntries = data.getUint16(17, true);
  const totalSectors = data.getUint16(19, true) || data.getUint32(32, true);
  const sectorsPerFat = data.getUint16(22, true) || data.getUint32(36, true);
  const jump = head[0];
  if (jump !== 0xeb && jump !== 0xe9) return undefined;
  if (bytesPerSector < 512 || bytesPerSector > 4096 || !isPowerOfTwo(bytesPerSector)) return undefined;
  if (!isPowerOfTwo(sectorsPerCluster) || reservedSectors === 0 || fatCount < 1 || fatCount > 4) return undefined;
  if (totalSectors === 0 || sectorsPerFat === 0) return undefined;
  const rootDirSectors = Math.ceil((rootEntries * 32) / bytesPerSector);
  const dataSectors = totalSectors - (reservedSectors + fatCount * sectorsPerFat + rootDirSectors);
  if (dataSectors <= 0) return undefined;
  const clusters = Math.floor(dataSectors / sectorsPerCluster);
  if (clusters < 4085) return 'fat12';
  if (clusters < 65525) return 'fat16';
  return 'fat32';
}

const EXT_SUPERBLOCK = 1024;
const EXT_MAGIC = 0xef53;
/** ext2/ext3 incompat features: compression, filetype, recover, journal_dev, meta_bg. */
const EXT3_INCOMPAT = 0x1 | 0x2 | 0x4 | 0x8 | 0x10;
/** ext2/ext3 ro_compat features: sparse_super, large_file, btree_dir. */
const EXT3_RO_COMPAT = 0x1 | 0x2 | 0x4;
const EXT_COMPAT_HAS_JOURNAL = 0x4;

/** ext2, ext3 or ext4, told apart by feature flags the way blkid does: any ext4-only feature makes it ext4. */
function probeExt(head: Uint8Array): string | undefined {
  if (head.length < EXT_SUPERBLOCK + 1024) return undefined;
  const superblock = view(head.subarray(EXT_SUPERBLOCK));
  if (superblock.getUint16(56, true) !== EXT_MAGIC) return undefined;
  const compat = superblock.getUint32(92, true);
  const incompat = superblock.getUint32(96, true);
  const roCompat = superblock.getUint32(100, true);
  if ((incompat & ~EXT3_INCOMPAT) !== 0 || (roCompat & ~EXT3_RO_COMPAT) !== 0) return 'ext4';
  return compat & EXT_COMPAT_HAS_JOURNAL ? 'ext3' : 'ext2';
}

/** The swap signature ends the first page, whose size is that of the machine that ran mkswap. */
function probeSwap(head: Uint8Array): string | undefined {
  for (const pageSize of [4096, 8192, 16384, 65536]) {
    const signature = ascii(head, pageSize - 10, 10);
    if (signature === 'SWAPSPACE2' || signature === 'SWAP-SPACE') return 'swap';
  }
  return undefined;
}

/** LUKS1 and LUKS2 share the magic and tell their version in the next two bytes (big-endian). */
function probeLuks(head: Uint8Array): string | undefined {
  if (ascii(head, 0, 6) !== 'LUKS\xba\xbe' || head.length < 8) return undefined;
  const version = view(head).getUint16(6, false);
  return version === 1 || version === 2 ? 'luks' : undefined;
}

/** An LVM2 physical volume: the label ("LABELONE", type "LVM2 001") sits in one of the first four 512-byte sectors. */
function probeLvm(head: Uint8Array): string | undefined {
  for (let sector = 0; sector < 4; sector++) {
    const at = sector * 512;
    if (ascii(head, at, 8) === 'LABELONE' && ascii(head, at + 24, 8) === 'LVM2 001') return 'lvm2';
  }
  return undefined;
}

const XFS_MAGIC = 'XFSB';
const BTRFS_SUPERBLOCK = 64 * 1024;
const BTRFS_MAGIC = '_BHRfS_M';

function probeXfs(head: Uint8Array): string | undefined {
  return ascii(head, 0, 4) === XFS_MAGIC ? 'xfs' : undefined;
}

function probeBtrfs(head: Uint8Array): string | undefined {
  return ascii(head, BTRFS_SUPERBLOCK + 0x40, 8) === BTRFS_MAGIC ? 'btrfs' : undefined;
}

/**
 * Exact magics come before the FAT and ext heuristics, so that a stale boot sector or ext
 * superblock left by an earlier filesystem does not hide the one that is there now.
 */
function probeFilesystem(head: Uint8Array): string | undefined {
  if (ascii(head, 3, 8) === 'NTFS    ' && hasBootSignature(head)) return 'ntfs';
  return probeLuks(head) ?? probeXfs(head) ?? probeLvm(head) ?? probeBtrfs(head) ?? probeFat(head) ?? probeExt(head) ?? probeSwap(head);
}

/**
 * What the first bytes of a volume hold: a partition table, a bare filesystem, or neither.
 * `head` is the volume's first `PROBE_LENGTH` bytes (fewer for a smaller volume).
 * `deviceSectorSize` is known for a block device; for an image file (undefined) a GPT
 * header is looked for at both 512 and 4096 bytes, and where it is found sets the sector size.
 */
export function probeVolume(head: Uint8Array, deviceSectorSize: number | undefined): ProbeResult {
  for (const sectorSize of deviceSectorSize === undefined ? [512, 4096] : [deviceSectorSize]) {
    const gpt = probeGpt(head, sectorSize);
    if (gpt) return { partitionTable: gpt, sectorSize };
  }
  const sectorSize = deviceSectorSize ?? 512;
  const filesystem = probeFilesystem(head);
  if (filesystem) return { partitionTable: { type: 'none' }, filesystem, sectorSize };
  return { partitionTable: probeMbr(head) ?? { type: 'none' }, sectorSize };
}
