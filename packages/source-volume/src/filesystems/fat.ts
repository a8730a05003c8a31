import type { Extent } from '@cairn/core';
import { appendExtent } from '../extent-list.js';
import type { UsedBlockMapper, VolumeReader } from '../extents.js';
import { InconsistentMetadataError } from './inconsistent.js';

/**
 * Used blocks of a FAT12/FAT16/FAT32 volume, following Microsoft's "FAT: General Overview of
 * On-Disk Format" (the BPB layout and the cluster-count rule that fixes the FAT type). In use:
 * the reserved sectors (boot sector, FSInfo, backup boot sector), every FAT copy, the FAT12/16
 * root directory region, and each data cluster whose entry is non-zero in any FAT copy (a
 * union, so copies that disagree never lose a cluster). Bad clusters are left out.
 */

type FatType = 'fat12' | 'fat16' | 'fat32';

interface FatGeometry {
  type: FatType;
  bytesPerSector: number;
  sectorsPerCluster: number;
  reservedSectors: number;
  fatCount: number;
  sectorsPerFat: number;
  rootDirSectors: number;
  totalSectors: number;
  firstDataSector: number;
  clusterCount: number;
  media: number;
  rootCluster: number;
}

const FAT12_MAX_CLUSTERS = 4085;
const FAT16_MAX_CLUSTERS = 65525;
/** The FAT32 limit: entries are 28 bits and 0x0FFFFFF7 upwards are not cluster numbers. */
const FAT32_MAX_CLUSTERS = 0x0ffffff5;
const BAD_CLUSTER: Record<FatType, number> = { fat12: 0xff7, fat16: 0xfff7, fat32: 0x0ffffff7 };
/** Bytes of the FAT read at once: a multiple of 3 (FAT12 packs two entries in 3 bytes) and of 4. */
const FAT_CHUNK = 3 * 1024 * 1024;

const isPowerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

function fail(message: string): never {
  throw new InconsistentMetadataError(`FAT: ${message}`);
}

async function readAt(volume: VolumeReader, offset: number, length: number, what: string): Promise<Uint8Array> {
  if (offset + length > volume.size) fail(`the ${what} (bytes ${offset}..${offset + length}) lies past the end of the volume (${volume.size} bytes)`);
  const bytes = new Uint8Array(length);
  await volume.read(bytes, offset, length);
  return bytes;
}

/** The BIOS parameter block's fields, as stored. */
interface BiosParameterBlock {
  data: DataView;
  bytesPerSector: number;
  sectorsPerCluster: number;
  reservedSectors: number;
  fatCount: number;
  rootEntries: number;
  totalSectors16: number;
  totalSectors32: number;
  media: number;
  sectorsPerFat16: number;
  sectorsPerFat32: number;
}

/** The boot sector's signature and jump, and the fields that must hold whatever the FAT type. */
function readBiosParameterBlock(boot: Uint8Array): BiosParameterBlock {
  if (boot.length < 512) fail(`the boot sector is truncated (${boot.length} bytes)`);
  const data = new DataView(boot.buffer, boot.byteOffset, boot.byteLength);
  if (boot[510] !== 0x55 || boot[511] !== 0xaa) fail('the boot sector has no 0x55AA signature');
  if (boot[0] !== 0xeb && boot[0] !== 0xe9) fail(`the boot sector does not start with a jump instruction (0x${boot[0]!.toString(16)})`);
  const bpb: BiosParameterBlock = {
    data,
    bytesPerSector: data.getUint16(11, true),
    sectorsPerCluster: boot[13]!,
    reservedSectors: data.getUint16(14, true),
    fatCount: boot[16]!,
    rootEntries: data.getUint16(17, true),
    totalSectors16: data.getUint16(19, true),
    media: boot[21]!,
    sectorsPerFat16: data.getUint16(22, true),
    totalSectors32: data.getUint32(32, true),
    sectorsPerFat32: data.getUint32(36, true),
  };
  const { bytesPerSector, sectorsPerCluster, media } = bpb;
  if (!isPowerOfTwo(bytesPerSector) || bytesPerSector < 512 || bytesPerSector > 4096) fail(`bytes per sector is ${bytesPerSector}, not 512, 1024, 2048 or 4096`);
  if (!isPowerOfTwo(sectorsPerCluster) || sectorsPerCluster > 128) fail(`sectors per cluster is ${sectorsPerCluster}, not a power of two up to 128`);
  if (bpb.reservedSectors === 0) fail('the reserved sector count is 0');
  if (bpb.fatCount === 0) fail('the number of FATs is 0');
  if (media !== 0xf0 && media < 0xf8) fail(`the media descriptor 0x${media.toString(16)} is not valid`);
  return bpb;
}

/** The total sector count, from whichever of the 16- and 32-bit fields is set (both: they must agree). */
function totalSectorsOf({ totalSectors16, totalSectors32 }: BiosParameterBlock): number {
  const totalSectors = totalSectors16 !== 0 ? totalSectors16 : totalSectors32;
  if (totalSectors === 0) fail('the total sector count is 0');
  if (totalSectors16 !== 0 && totalSectors32 !== 0 && totalSectors16 !== totalSectors32) {
    fail(`the 16-bit (${totalSectors16}) and 32-bit (${totalSectors32}) total sector counts disagree`);
  }
  return totalSectors;
}

/** Checks a FAT32 BPB's own fields; returns its root directory's first cluster. */
function fat32RootCluster(bpb: BiosParameterBlock, type: FatType, clusterCount: number): number {
  const { data, reservedSectors, rootEntries, totalSectors16 } = bpb;
  if (type !== 'fat32') fail(`the BPB is a FAT32 one (16-bit FAT size 0) but the ${clusterCount} clusters make it ${type.toUpperCase()}`);
  if (clusterCount > FAT32_MAX_CLUSTERS) fail(`${clusterCount} clusters exceed the FAT32 limit of ${FAT32_MAX_CLUSTERS}`);
  if (rootEntries !== 0) fail(`FAT32 but the root entry count is ${rootEntries}, not 0`);
  if (totalSectors16 !== 0) fail(`FAT32 but the 16-bit total sector count is ${totalSectors16}, not 0`);
  if (data.getUint16(42, true) !== 0) fail(`FAT32 version ${data.getUint16(42, true).toString(16)} is not 0.0`);
  const rootCluster = data.getUint32(44, true);
  if (rootCluster < 2 || rootCluster > clusterCount + 1) fail(`the root directory cluster ${rootCluster} is outside clusters 2..${clusterCount + 1}`);
  const fsInfo = data.getUint16(48, true);
  const backupBoot = data.getUint16(50, true);
  if (fsInfo !== 0 && fsInfo !== 0xffff && fsInfo >= reservedSectors) fail(`the FSInfo sector ${fsInfo} is outside the ${reservedSectors} reserved sectors`);
  if (backupBoot !== 0 && backupBoot !== 0xffff && backupBoot >= reservedSectors) {
    fail(`the backup boot sector ${backupBoot} is outside the ${reservedSectors} reserved sectors`);
  }
  return rootCluster;
}

/** Parses and checks the BIOS parameter block; every inconsistency is an InconsistentMetadataError. */
export function parseFatBootSector(boot: Uint8Array, volumeSize: number): FatGeometry {
  const bpb = readBiosParameterBlock(boot);
  const { bytesPerSector, sectorsPerCluster, reservedSectors, fatCount, rootEntries, media, sectorsPerFat16 } = bpb;
  const totalSectors = totalSectorsOf(bpb);
  const isFat32Bpb = sectorsPerFat16 === 0;
  const sectorsPerFat = isFat32Bpb ? bpb.sectorsPerFat32 : sectorsPerFat16;
  if (sectorsPerFat === 0) fail('the FAT size is 0 sectors');
  const rootDirSectors = Math.ceil((rootEntries * 32) / bytesPerSector);
  const firstDataSector = reservedSectors + fatCount * sectorsPerFat + rootDirSectors;
  if (firstDataSector >= totalSectors) {
    fail(`the reserved sectors, FATs and root directory (${firstDataSector} sectors) do not fit in the ${totalSectors} sectors of the filesystem`);
  }
  const clusterCount = Math.floor((totalSectors - firstDataSector) / sectorsPerCluster);
  const type: FatType = clusterCount < FAT12_MAX_CLUSTERS ? 'fat12' : clusterCount < FAT16_MAX_CLUSTERS ? 'fat16' : 'fat32';
  if (clusterCount === 0) fail('the data region holds no cluster');
  let rootCluster = 0;
  if (isFat32Bpb) rootCluster = fat32RootCluster(bpb, type, clusterCount);
  else if (type === 'fat32') fail(`${clusterCount} clusters make it FAT32 but the BPB is a FAT12/16 one (16-bit FAT size ${sectorsPerFat16})`);
  else if (rootEntries === 0) fail(`${type.toUpperCase()} but the root entry count is 0`);
  checkFatHoldsClusters(type, clusterCount, sectorsPerFat * bytesPerSector);
  if (totalSectors * bytesPerSector > volumeSize) {
    fail(`the filesystem (${totalSectors} sectors of ${bytesPerSector} bytes) is larger than the volume (${volumeSize} bytes)`);
  }
  return { type, bytesPerSector, sectorsPerCluster, reservedSectors, fatCount, sectorsPerFat, rootDirSectors, totalSectors, firstDataSector, clusterCount, media, rootCluster };
}

/** Each FAT must have room for an entry per cluster (and the two reserved entries). */
function checkFatHoldsClusters(type: FatType, clusterCount: number, fatBytes: number): void {
  const entryBits = type === 'fat12' ? 12 : type === 'fat16' ? 16 : 32;
  const fatBytesNeeded = Math.ceil(((clusterCount + 2) * entryBits) / 8);
  if (fatBytesNeeded > fatBytes) fail(`each FAT (${fatBytes} bytes) is too small for ${clusterCount} ${type.toUpperCase()} clusters (${fatBytesNeeded} bytes)`);
}

/**
 * Reads one FAT copy and sets, in `used`, the bit of each cluster whose entry is allocated or
 * end-of-chain. Throws on an entry pointing outside the data region.
 */
async function markFatCopy(volume: VolumeReader, fs: FatGeometry, copy: number, used: Uint8Array): Promise<void> {
  const fatOffset = (fs.reservedSectors + copy * fs.sectorsPerFat) * fs.bytesPerSector;
  const entryCount = fs.clusterCount + 2;
  const fatBytes = fs.type === 'fat12' ? Math.ceil((entryCount * 3) / 2) : entryCount * (fs.type === 'fat16' ? 2 : 4);
  const lastCluster = fs.clusterCount + 1;
  const bad = BAD_CLUSTER[fs.type];
  const mask = fs.type === 'fat32' ? 0x0fffffff : 0xffffffff;
  const copyName = `FAT copy ${copy + 1}`;

  const check = (cluster: number, value: number): void => {
    // 0 free, bad skipped, >= bad + 1 end-of-chain; any other value must be a cluster number.
    if (value === 0 || value === bad) return;
    if (value < bad && (value < 2 || value > lastCluster)) {
      fail(`${copyName}: the entry of cluster ${cluster} points to cluster ${value}, outside clusters 2..${lastCluster}`);
    }
    used[cluster >>> 3] |= 1 << (cluster & 7);
  };

  for (let start = 0; start < fatBytes; start += FAT_CHUNK) {
    const length = Math.min(FAT_CHUNK, fatBytes - start);
    const chunk = await readAt(volume, fatOffset + start, length, copyName);
    if (start === 0) {
      const first = fs.type === 'fat12' ? chunk[0]! | ((chunk[1]! & 0x0f) << 8) : fs.type === 'fat16' ? chunk[0]! | (chunk[1]! << 8) : chunk[0]!;
      if ((first & 0xff) !== fs.media) fail(`${copyName}: entry 0 (0x${first.toString(16)}) does not carry the media descriptor 0x${fs.media.toString(16)}`);
    }
    if (fs.type === 'fat12') {
      // Two entries in every 3 bytes; chunks start on a 3-byte boundary, i.e. an even entry.
      const firstEntry = (start / 3) * 2;
      for (let at = 0; at < length; at += 3) {
        const b0 = chunk[at]!;
        const b1 = at + 1 < length ? chunk[at + 1]! : 0;
        const b2 = at + 2 < length ? chunk[at + 2]! : 0;
        if ((b0 | b1 | b2) === 0) continue;
        const entry = firstEntry + (at / 3) * 2;
        if (entry >= 2 && entry < entryCount) check(entry, b0 | ((b1 & 0x0f) << 8));
        if (entry + 1 >= 2 && entry + 1 < entryCount) check(entry + 1, (b1 >> 4) | (b2 << 4));
      }
    } else {
      const width = fs.type === 'fat16' ? 2 : 4;
      const words = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      const firstEntry = start / width;
      const decode = (at: number): void => {
        const entry = firstEntry + at / width;
        if (entry >= 2 && entry < entryCount) check(entry, (width === 2 ? words.getUint16(at, true) : words.getUint32(at, true) & mask) >>> 0);
      };
      // Whole zero 8-byte groups (4 FAT16 or 2 FAT32 entries) are skipped without decoding.
      const wide = new BigUint64Array(chunk.buffer, chunk.byteOffset, Math.floor(length / 8));
      for (let group = 0; group < wide.length; group++) {
        if (wide[group] === 0n) continue;
        for (let at = group * 8; at < group * 8 + 8; at += width) decode(at);
      }
      for (let at = wide.length * 8; at < length; at += width) decode(at);
    }
  }
}


export const mapFatUsedBlocks: UsedBlockMapper = async (volume) => {
  const boot = await readAt(volume, 0, Math.min(volume.size, 512), 'boot sector');
  const fs = parseFatBootSector(boot, volume.size);

  const used = new Uint8Array(Math.ceil((fs.clusterCount + 2) / 8));
  for (let copy = 0; copy < fs.fatCount; copy++) await markFatCopy(volume, fs, copy, used);
  if (fs.type === 'fat32' && (used[fs.rootCluster >>> 3]! & (1 << (fs.rootCluster & 7))) === 0) {
    fail(`the FAT32 root directory cluster ${fs.rootCluster} is free in every FAT copy`);
  }

  const extents: Extent[] = [];
  appendExtent(extents, 0, fs.firstDataSector * fs.bytesPerSector);
  const clusterBytes = fs.sectorsPerCluster * fs.bytesPerSector;
  const dataStart = fs.firstDataSector * fs.bytesPerSector;
  const clusterOffset = (cluster: number): number => dataStart + (cluster - 2) * clusterBytes;
  // Runs of set bits, clusters 2..clusterCount+1; whole 0x00 and 0xFF bytes are taken at once.
  let runStart = -1;
  const end = fs.clusterCount + 2;
  for (let cluster = 2; cluster < end; ) {
    const byte = used[cluster >>> 3]!;
    if ((cluster & 7) === 0 && cluster + 8 <= end && (byte === 0 || byte === 0xff)) {
      if (byte === 0xff && runStart < 0) runStart = cluster;
      if (byte === 0 && runStart >= 0) {
        appendExtent(extents, clusterOffset(runStart), (cluster - runStart) * clusterBytes);
        runStart = -1;
      }
      cluster += 8;
      continue;
    }
    const set = (byte & (1 << (cluster & 7))) !== 0;
    if (set && runStart < 0) runStart = cluster;
    if (!set && runStart >= 0) {
      appendExtent(extents, clusterOffset(runStart), (cluster - runStart) * clusterBytes);
      runStart = -1;
    }
    cluster++;
  }
  if (runStart >= 0) appendExtent(extents, clusterOffset(runStart), (end - runStart) * clusterBytes);
  return extents;
};
