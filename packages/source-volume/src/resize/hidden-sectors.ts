import type { FileHandle } from 'node:fs/promises';

/*
 * NTFS and FAT boot sectors record where their partition starts ("hidden sectors", a u32 at
 * byte 0x1C of the BIOS parameter block), and Windows' boot code reads the volume through it.
 * A partition moved on the disk gets the field updated, in the boot sector and in its backup
 * (NTFS: the volume's last sector; FAT32: the sector BPB_BkBootSec names).
 */

const HIDDEN_SECTORS = 0x1c;

async function patch(handle: FileHandle, sectorOffset: number, startSector: number): Promise<void> {
  const sector = Buffer.alloc(512);
  await handle.read(sector, 0, 512, sectorOffset);
  if (sector[510] !== 0x55 || sector[511] !== 0xaa) return;
  sector.writeUInt32LE(startSector, HIDDEN_SECTORS);
  await handle.write(sector, HIDDEN_SECTORS, 4, sectorOffset + HIDDEN_SECTORS);
}

/** Updates the hidden-sectors field of the NTFS or FAT filesystem now at byte `offset`; other filesystems have none. */
export async function updateHiddenSectors(handle: FileHandle, filesystem: string | undefined, offset: number, sectorSize: number): Promise<void> {
  if (filesystem !== 'ntfs' && !filesystem?.startsWith('fat')) return;
  const boot = Buffer.alloc(512);
  await handle.read(boot, 0, 512, offset);
  const bytesPerSector = boot.readUInt16LE(0x0b);
  if (![512, 1024, 2048, 4096].includes(bytesPerSector)) return;
  const startSector = offset / sectorSize;
  if (!Number.isInteger(startSector) || startSector > 0xffffffff) return;
  await patch(handle, offset, startSector);
  if (filesystem === 'ntfs') {
    const totalSectors = Number(boot.readBigUInt64LE(0x28));
    await patch(handle, offset + totalSectors * bytesPerSector, startSector);
  } else if (filesystem === 'fat32') {
    const backupSector = boot.readUInt16LE(0x32);
    if (backupSector > 0 && backupSector < 32) await patch(handle, offset + backupSector * bytesPerSector, startSector);
  }
}
