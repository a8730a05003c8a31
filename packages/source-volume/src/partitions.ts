import { crc32 } from 'node:zlib';
import type { VolumeReader } from './extents.js';

/** One partition as the table describes it. Offsets and sizes in bytes. */
export interface PartitionEntry {
  /** 1-based number as Linux names it (sda1…; MBR logical partitions start at 5). */
  index: number;
  offset: number;
  size: number;
  /** MBR type byte as `0x83`, or the GPT partition type GUID. */
  type: string;
  name?: string;
  /** GPT unique partition GUID. */
  guid?: string;
  bootable?: boolean;
}

export interface PartitionTable {
  type: 'mbr' | 'gpt';
  entries: PartitionEntry[];
  /** Byte ranges of the table's own structures, for the layout record. */
  details: Record<string, unknown>;
}

/** The table is unusable: the volume is imaged exactly and the reason recorded. */
export class PartitionTableError extends Error {
  override name = 'PartitionTableError';
}

const EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85]);
const GPT_PROTECTIVE = 0xee;
const MAX_LOGICAL_PARTITIONS = 128;

async function readBytes(volume: VolumeReader, offset: number, length: number): Promise<Buffer> {
  if (offset < 0 || offset + length > volume.size) {
    throw new PartitionTableError(`a partition table structure at byte ${offset} lies past the end of the disk (${volume.size} bytes)`);
  }
  const bytes = Buffer.alloc(length);
  await volume.read(bytes, offset, length);
  return bytes;
}

function hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, '0')}`;
}

/** MBR with primary, extended and logical partitions. Entries are checked against the disk size. */
export async function readMbr(volume: VolumeReader, sectorSize: number): Promise<PartitionTable> {
  const mbr = await readBytes(volume, 0, 512);
  if (mbr[510] !== 0x55 || mbr[511] !== 0xaa) throw new PartitionTableError('the MBR has no boot signature');
  const entries: PartitionEntry[] = [];
  let extended: { start: number; size: number } | undefined;
  for (let slot = 0; slot < 4; slot++) {
    const at = 446 + slot * 16;
    const type = mbr[at + 4]!;
    const startSector = mbr.readUInt32LE(at + 8);
    const sectors = mbr.readUInt32LE(at + 12);
    if (type === 0 || sectors === 0) continue;
    if (type === GPT_PROTECTIVE) {
      throw new PartitionTableError('the disk has a protective MBR but no valid GPT header (the GPT may be damaged)');
    }
    const partition = checkedRange(volume, startSector, sectors, sectorSize, `MBR partition ${slot + 1}`);
    if (EXTENDED_TYPES.has(type)) {
      if (extended) throw new PartitionTableError('the MBR has more than one extended partition');
      extended = { start: startSector, size: sectors };
      continue;
    }
    entries.push({ index: slot + 1, ...partition, type: hex(type), bootable: mbr[at] === 0x80 });
  }
  if (extended) entries.push(...(await readLogicalPartitions(volume, sectorSize, extended)));
  return { type: 'mbr', entries, details: { diskId: mbr.readUInt32LE(440).toString(16).padStart(8, '0'), extended: extended ? { offset: extended.start * sectorSize, size: extended.size * sectorSize } : undefined } };
}

/** Follows the chain of extended boot records; each names one logical partition and the next record. */
async function readLogicalPartitions(volume: VolumeReader, sectorSize: number, extended: { start: number; size: number }): Promise<PartitionEntry[]> {
  const entries: PartitionEntry[] = [];
  const visited = new Set<number>();
  let ebrSector = extended.start;
  while (true) {
    if (visited.has(ebrSector)) throw new PartitionTableError(`the chain of extended boot records loops at sector ${ebrSector}`);
    if (visited.size >= MAX_LOGICAL_PARTITIONS) throw new PartitionTableError(`more than ${MAX_LOGICAL_PARTITIONS} logical partitions`);
    if (ebrSector < extended.start || ebrSector >= extended.start + extended.size) {
      throw new PartitionTableError(`an extended boot record at sector ${ebrSector} lies outside the extended partition`);
    }
    visited.add(ebrSector);
    const ebr = await readBytes(volume, ebrSector * sectorSize, 512);
    if (ebr[510] !== 0x55 || ebr[511] !== 0xaa) throw new PartitionTableError(`the extended boot record at sector ${ebrSector} has no boot signature`);
    const type = ebr[446 + 4]!;
    const relative = ebr.readUInt32LE(446 + 8);
    const sectors = ebr.readUInt32LE(446 + 12);
    if (type !== 0 && sectors !== 0) {
      const start = ebrSector + relative;
      if (start + sectors > extended.start + extended.size) {
        throw new PartitionTableError(`logical partition ${5 + entries.length} ends past its extended partition`);
      }
      entries.push({ index: 5 + entries.length, ...checkedRange(volume, start, sectors, sectorSize, `logical partition ${5 + entries.length}`), type: hex(type), bootable: ebr[446] === 0x80 });
    }
    const nextType = ebr[462 + 4]!;
    const nextRelative = ebr.readUInt32LE(462 + 8);
    if (nextType === 0 || nextRelative === 0) return entries;
    if (!EXTENDED_TYPES.has(nextType)) throw new PartitionTableError(`the extended boot record at sector ${ebrSector} links to a record of type ${hex(nextType)}`);
    ebrSector = extended.start + nextRelative;
  }
}

function checkedRange(volume: VolumeReader, startSector: number, sectors: number, sectorSize: number, what: string): { offset: number; size: number } {
  const offset = startSector * sectorSize;
  const size = sectors * sectorSize;
  if (startSector === 0) throw new PartitionTableError(`${what} starts at sector 0, over the partition table`);
  if (offset + size > volume.size) {
    throw new PartitionTableError(`${what} (sectors ${startSector}–${startSector + sectors - 1}) ends past the end of the disk (${volume.size} bytes)`);
  }
  return { offset, size };
}

export interface GptHeader {
  currentLba: bigint;
  backupLba: bigint;
  firstUsableLba: bigint;
  lastUsableLba: bigint;
  diskGuid: string;
  entriesLba: bigint;
  entryCount: number;
  entrySize: number;
  entriesCrc: number;
}

/** Parses and checks a GPT header sector (header CRC included); undefined when it is not valid. */
export function parseGptHeader(sector: Buffer): GptHeader | undefined {
  if (sector.toString('latin1', 0, 8) !== 'EFI PART') return undefined;
  const headerSize = sector.readUInt32LE(12);
  if (headerSize < 92 || headerSize > sector.length) return undefined;
  const copy = Buffer.from(sector.subarray(0, headerSize));
  copy.writeUInt32LE(0, 16);
  if (crc32(copy) !== sector.readUInt32LE(16)) return undefined;
  return {
    currentLba: sector.readBigUInt64LE(24),
    backupLba: sector.readBigUInt64LE(32),
    firstUsableLba: sector.readBigUInt64LE(40),
    lastUsableLba: sector.readBigUInt64LE(48),
    diskGuid: formatGuid(sector.subarray(56, 72)),
    entriesLba: sector.readBigUInt64LE(72),
    entryCount: sector.readUInt32LE(80),
    entrySize: sector.readUInt32LE(84),
    entriesCrc: sector.readUInt32LE(88),
  };
}

export function formatGuid(bytes: Uint8Array): string {
  const part = (from: number, to: number, reverse: boolean) => {
    const hexBytes = Array.from(bytes.subarray(from, to), (b) => b.toString(16).padStart(2, '0'));
    return (reverse ? hexBytes.reverse() : hexBytes).join('');
  };
  return [part(0, 4, true), part(4, 6, true), part(6, 8, true), part(8, 10, false), part(10, 16, false)].join('-');
}

/** GPT: protective MBR, primary header and entries (CRCs checked), backup header checked too. */
export async function readGpt(volume: VolumeReader, sectorSize: number): Promise<PartitionTable> {
  const header = parseGptHeader(await readBytes(volume, sectorSize, sectorSize));
  if (!header) throw new PartitionTableError('the primary GPT header is not valid (bad signature or CRC)');
  if (header.currentLba !== 1n) throw new PartitionTableError(`the primary GPT header says it is at LBA ${header.currentLba}, not 1`);
  if (header.entrySize < 128 || header.entrySize % 8 !== 0 || header.entryCount === 0 || header.entryCount > 16384) {
    throw new PartitionTableError(`the GPT header describes ${header.entryCount} entries of ${header.entrySize} bytes`);
  }
  const lastLba = BigInt(Math.floor(volume.size / sectorSize) - 1);
  if (header.lastUsableLba > lastLba || header.firstUsableLba > header.lastUsableLba) {
    throw new PartitionTableError(`the GPT's usable area (LBA ${header.firstUsableLba}–${header.lastUsableLba}) does not fit the disk (last LBA ${lastLba})`);
  }
  const entriesBytes = header.entryCount * header.entrySize;
  const entries = await readBytes(volume, Number(header.entriesLba) * sectorSize, entriesBytes);
  if (crc32(entries) !== header.entriesCrc) throw new PartitionTableError('the GPT partition entries fail their CRC');

  const backupProblem = await checkBackupGpt(volume, sectorSize, header, lastLba);
  const partitions: PartitionEntry[] = [];
  for (let i = 0; i < header.entryCount; i++) {
    const entry = entries.subarray(i * header.entrySize, (i + 1) * header.entrySize);
    if (entry.subarray(0, 16).every((b) => b === 0)) continue;
    const first = entry.readBigUInt64LE(32);
    const last = entry.readBigUInt64LE(40);
    if (first < header.firstUsableLba || last > header.lastUsableLba || last < first) {
      throw new PartitionTableError(`GPT partition ${i + 1} (LBA ${first}–${last}) lies outside the usable area`);
    }
    partitions.push({
      index: i + 1,
      offset: Number(first) * sectorSize,
      size: Number(last - first + 1n) * sectorSize,
      type: formatGuid(entry.subarray(0, 16)),
      guid: formatGuid(entry.subarray(16, 32)),
      name: entry.subarray(56, 128).toString('utf16le').replace(/\0.*$/s, ''),
    });
  }
  return {
    type: 'gpt',
    entries: partitions,
    details: {
      diskId: header.diskGuid,
      entriesLba: Number(header.entriesLba),
      entryCount: header.entryCount,
      entrySize: header.entrySize,
      firstUsableLba: Number(header.firstUsableLba),
      lastUsableLba: Number(header.lastUsableLba),
      backupLba: Number(header.backupLba),
      ...(backupProblem && { backupProblem }),
    },
  };
}

/** A damaged backup GPT does not stop imaging (it is imaged exactly anyway), but it is worth recording. */
async function checkBackupGpt(volume: VolumeReader, sectorSize: number, primary: GptHeader, lastLba: bigint): Promise<string | undefined> {
  if (primary.backupLba !== lastLba) return `the backup GPT header is recorded at LBA ${primary.backupLba}, not at the last LBA ${lastLba}`;
  const backup = parseGptHeader(await readBytes(volume, Number(lastLba) * sectorSize, sectorSize));
  if (!backup) return 'the backup GPT header is not valid';
  if (backup.entriesCrc !== primary.entriesCrc) return 'the backup GPT entries differ from the primary ones';
  return undefined;
}

/** Partitions must not overlap each other; a table where they do cannot be imaged by partition. */
export function checkNoOverlap(entries: readonly PartitionEntry[]): void {
  const sorted = [...entries].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const previous = sorted[i - 1]!;
    if (sorted[i]!.offset < previous.offset + previous.size) {
      throw new PartitionTableError(`partitions ${previous.index} and ${sorted[i]!.index} overlap`);
    }
  }
}
