import type { FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { ResizeError } from '@cairn/core';
import { parseGptHeader } from '../partitions.js';

/*
 * Rewriting a restored disk's partition table for its new size. Only the places and sizes of
 * the partitions that moved or changed size are touched: a GPT keeps its disk GUID, every
 * partition's type and unique GUIDs, names and attributes (both headers, both entry arrays and
 * every CRC are rewritten, the protective MBR sized to the disk); an MBR keeps its disk
 * signature, types and boot flags.
 */

/** A partition's new place, in bytes. */
export interface PartitionPlace {
  index: number;
  offset: number;
  size: number;
}

export const MIB = 1024 * 1024;
export const alignDown = (bytes: number, to = MIB) => Math.floor(bytes / to) * to;
export const alignUp = (bytes: number, to = MIB) => Math.ceil(bytes / to) * to;

/** Bytes a GPT keeps at the disk's end (backup entries and header), rounded up to a MiB. */
export const GPT_TAIL = MIB;

async function readAt(handle: FileHandle, offset: number, length: number): Promise<Buffer> {
  const bytes = Buffer.alloc(length);
  await handle.read(bytes, 0, length, offset);
  return bytes;
}

function seal(header: Buffer): Buffer {
  const headerSize = header.readUInt32LE(12);
  header.writeUInt32LE(0, 16);
  header.writeUInt32LE(crc32(header.subarray(0, headerSize)), 16);
  return header;
}

/**
 * Writes the GPT of a disk of `diskSize` bytes whose partitions now lie at `places`: primary
 * header and entries where they were, backup entries and header at the new end, the old backup
 * (when it lies inside the disk) cleared. The caller has made the disk that size already.
 */
export async function rewriteGpt(handle: FileHandle, sectorSize: number, diskSize: number, places: readonly PartitionPlace[]): Promise<void> {
  const primarySector = await readAt(handle, sectorSize, sectorSize);
  const primary = parseGptHeader(primarySector);
  if (!primary) throw new ResizeError('the restored image has no valid primary GPT header');
  const entrySectors = Math.ceil((primary.entryCount * primary.entrySize) / sectorSize);
  const entries = await readAt(handle, Number(primary.entriesLba) * sectorSize, entrySectors * sectorSize);
  const lastLba = Math.floor(diskSize / sectorSize) - 1;
  const backupEntriesLba = lastLba - entrySectors;
  const lastUsable = backupEntriesLba - 1;
  for (const place of places) {
    const at = (place.index - 1) * primary.entrySize;
    const first = place.offset / sectorSize;
    const last = (place.offset + place.size) / sectorSize - 1;
    if (!Number.isInteger(first) || !Number.isInteger(last) || last > lastUsable) {
      throw new ResizeError(`partition ${place.index} (bytes ${place.offset}–${place.offset + place.size}) does not fit the GPT of a ${diskSize}-byte disk`);
    }
    entries.writeBigUInt64LE(BigInt(first), at + 32);
    entries.writeBigUInt64LE(BigInt(last), at + 40);
  }
  const entriesBytes = entries.subarray(0, primary.entryCount * primary.entrySize);
  const header = Buffer.from(primarySector);
  header.writeBigUInt64LE(BigInt(lastLba), 32);
  header.writeBigUInt64LE(BigInt(lastUsable), 48);
  header.writeUInt32LE(crc32(entriesBytes), 88);
  seal(header);
  const backup = Buffer.from(header);
  backup.writeBigUInt64LE(BigInt(lastLba), 24);
  backup.writeBigUInt64LE(1n, 32);
  backup.writeBigUInt64LE(BigInt(backupEntriesLba), 72);
  seal(backup);

  // The old backup structures, if they now lie inside the disk, are free space a tool could mistake for a table.
  const oldBackupLba = Number(primary.backupLba);
  if ((oldBackupLba + 1) * sectorSize <= diskSize && oldBackupLba !== lastLba) {
    await handle.write(Buffer.alloc((entrySectors + 1) * sectorSize), 0, (entrySectors + 1) * sectorSize, (oldBackupLba - entrySectors) * sectorSize);
  }
  await handle.write(entries, 0, entries.length, Number(primary.entriesLba) * sectorSize);
  await handle.write(entries, 0, entries.length, backupEntriesLba * sectorSize);
  await handle.write(backup, 0, sectorSize, lastLba * sectorSize);
  await handle.write(header, 0, sectorSize, sectorSize);
  await sizeProtectiveMbr(handle, lastLba);
}

/** The protective MBR's 0xEE entry covers the whole disk (capped at 2^32 - 1 sectors). */
async function sizeProtectiveMbr(handle: FileHandle, lastLba: number): Promise<void> {
  const mbr = await readAt(handle, 0, 512);
  for (let entry = 446; entry < 510; entry += 16) {
    if (mbr[entry + 4] !== 0xee) continue;
    mbr.writeUInt32LE(Math.min(lastLba, 0xffffffff), entry + 12);
    await handle.write(mbr, entry + 12, 4, entry + 12);
  }
}

/**
 * Rewrites the MBR entries of primary partitions (1–4) that moved or changed size; their CHS
 * fields are set to "use the LBA fields" (0xFE 0xFF 0xFF), as partitioning tools do for
 * partitions past 8 GiB. Logical partitions live in a chain of EBRs: not resized (the caller refuses them).
 */
export async function rewriteMbr(handle: FileHandle, sectorSize: number, places: readonly PartitionPlace[]): Promise<void> {
  const mbr = await readAt(handle, 0, 512);
  for (const place of places) {
    if (place.index > 4) throw new ResizeError(`partition ${place.index} is a logical MBR partition; cairn resizes primary ones only`);
    const at = 446 + (place.index - 1) * 16;
    const sectors = place.size / sectorSize;
    if (place.offset / sectorSize + sectors > 0xffffffff) throw new ResizeError(`partition ${place.index} would end past the 2 TiB an MBR can address`);
    mbr.writeUInt32LE(place.offset / sectorSize, at + 8);
    mbr.writeUInt32LE(sectors, at + 12);
    mbr.set([0xfe, 0xff, 0xff], at + 1);
    mbr.set([0xfe, 0xff, 0xff], at + 5);
  }
  await handle.write(mbr, 0, 512, 0);
}
