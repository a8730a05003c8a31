import { open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { readBlockDeviceGeometry, splitDeviceNumber } from '@cairn/core';
import { parseGptHeader } from './partitions.js';

/**
 * After a disk image is restored onto a larger disk (or a larger image file), the GPT's
 * backup header and entries still sit where the old disk ended, inside what is now usable
 * space. This moves them to the new end, updates the primary header (backup LBA, last usable
 * LBA) and the protective MBR, and recomputes every CRC — what `sgdisk -e` does.
 * Returns false when there is nothing to do.
 */
export async function relocateBackupGpt(path: string, imageSize: number, sectorSize: number): Promise<boolean> {
  const handle = await open(path, 'r+');
  try {
    const stats = await handle.stat({ bigint: true });
    const size = stats.isBlockDevice() ? (await readBlockDeviceGeometry(splitDeviceNumber(stats.rdev)))?.size : Number(stats.size);
    if (size === undefined || size <= imageSize) return false;

    const read = async (lba: number, sectors: number) => {
      const bytes = Buffer.alloc(sectors * sectorSize);
      await handle.read(bytes, 0, bytes.length, lba * sectorSize);
      return bytes;
    };
    const write = (bytes: Buffer, lba: number) => handle.write(bytes, 0, bytes.length, lba * sectorSize);

    const primarySector = await read(1, 1);
    const primary = parseGptHeader(primarySector);
    if (!primary) throw new Error(`${path} has no valid primary GPT header after the restore`);
    const entrySectors = Math.ceil((primary.entryCount * primary.entrySize) / sectorSize);
    const entries = await read(Number(primary.entriesLba), entrySectors);

    const oldLast = imageSize / sectorSize - 1;
    const newLast = Math.floor(size / sectorSize) - 1;
    // Moved already (restore --grow rewrote the table): the old place now lies inside a partition.
    if (primary.backupLba === BigInt(newLast)) return false;
    const newEntriesLba = newLast - entrySectors;
    const headerSize = primarySector.readUInt32LE(12);

    const sealHeader = (sector: Buffer) => {
      sector.writeUInt32LE(0, 16);
      sector.writeUInt32LE(crc32(sector.subarray(0, headerSize)), 16);
      return sector;
    };
    const updatedPrimary = Buffer.from(primarySector);
    updatedPrimary.writeBigUInt64LE(BigInt(newLast), 32); // backup LBA
    updatedPrimary.writeBigUInt64LE(BigInt(newEntriesLba - 1), 48); // last usable LBA
    sealHeader(updatedPrimary);
    const backup = Buffer.from(updatedPrimary);
    backup.writeBigUInt64LE(BigInt(newLast), 24); // this header's LBA
    backup.writeBigUInt64LE(1n, 32); // the other header's LBA
    backup.writeBigUInt64LE(BigInt(newEntriesLba), 72); // entries
    sealHeader(backup);

    // The old backup structures now lie in usable space: clear them so no tool mistakes them for a table.
    await write(Buffer.alloc((entrySectors + 1) * sectorSize), oldLast - entrySectors);
    await write(entries, newEntriesLba);
    await write(backup, newLast);
    await write(updatedPrimary, 1);
    await growProtectiveMbr(handle, newLast);
    await handle.sync();
    return true;
  } finally {
    await handle.close();
  }
}

/** The protective MBR's 0xEE entry covers the whole disk (capped at 2^32 - 1 sectors). */
async function growProtectiveMbr(handle: Awaited<ReturnType<typeof open>>, lastLba: number): Promise<void> {
  const mbr = Buffer.alloc(512);
  await handle.read(mbr, 0, 512, 0);
  for (let entry = 446; entry < 510; entry += 16) {
    if (mbr[entry + 4] !== 0xee) continue;
    mbr.writeUInt32LE(Math.min(lastLba, 0xffffffff), entry + 12);
    await handle.write(mbr, entry + 12, 4, entry + 12);
  }
}
