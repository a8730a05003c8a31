import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'vitest';
import { run, runCommand } from './exec.js';
import { zeroFile } from './disk.js';
import { randomBytesFor } from './volume.js';

/*
 * Helpers of the `restore --grow` / `--shrink` tests: partitions made with the real tools
 * (mkfs.vfat + mtools, mkfs.ntfs + ntfscp, mkfs.btrfs --rootdir) and the GPT read back with
 * sgdisk, the way a user would check a disk after restoring it.
 */

/** A file put into a filesystem image, and its content. */
export interface PlainFile {
  name: string;
  content: Buffer;
}

export function plainFiles(seed: string, count: number, size: number): PlainFile[] {
  return Array.from({ length: count }, (_, i) => ({ name: `file-${i}.bin`, content: randomBytesFor(`${seed}/${i}`, size + i * 4097) }));
}

/** A FAT (EFI system partition) image of `size` bytes holding `files` in its root, via mkfs.vfat and mcopy. */
export async function makeFatImage(dir: string, name: string, size: number, files: readonly PlainFile[]): Promise<string> {
  const image = join(dir, `${name}.img`);
  await zeroFile(image, size);
  await run('mkfs.vfat', ['-n', 'ESP', image]);
  for (const file of files) {
    const source = join(dir, `${name}-${file.name}`);
    await writeFile(source, file.content);
    await run('mcopy', ['-i', image, source, `::/${file.name}`]);
  }
  return image;
}

/** An NTFS image (mkfs.ntfs -F -f -Q) holding `files` in its root, copied in with ntfscp (no mount needed). */
export async function makeNtfsImage(dir: string, name: string, size: number, files: readonly PlainFile[]): Promise<string> {
  const image = join(dir, `${name}.img`);
  await zeroFile(image, size);
  await run('mkfs.ntfs', ['-F', '-f', '-Q', '-L', 'DATA', image]);
  for (const file of files) {
    const source = join(dir, `${name}-${file.name}`);
    await writeFile(source, file.content);
    await run('ntfscp', ['-f', image, source, file.name]);
  }
  return image;
}

/** Asserts that every file reads back from the NTFS filesystem on `device` byte for byte (ntfscat). */
export async function expectNtfsFiles(device: string, files: readonly PlainFile[], scratch: string): Promise<void> {
  for (const file of files) {
    await run('sh', ['-c', 'ntfscat -f "$1" "$2" > "$3"', 'sh', device, file.name, scratch]);
    expect((await readFile(scratch)).equals(file.content), `${file.name} on ${device}`).toBe(true);
  }
}

/** A Btrfs image of `size` bytes made from the folder `tree` (mkfs.btrfs --rootdir). */
export async function makeBtrfsImage(dir: string, name: string, size: number, tree: string): Promise<string> {
  const image = join(dir, `${name}.img`);
  await zeroFile(image, size);
  await run('mkfs.btrfs', ['-q', '-f', '-L', 'root', '--rootdir', tree, image]);
  return image;
}

/** Asserts `sgdisk -v` finds no problem in the GPT of `image`. */
export async function expectCleanGpt(image: string): Promise<void> {
  const result = await runCommand('sgdisk', ['-v', image]);
  const output = result.stdout + result.stderr;
  expect(output, `sgdisk -v ${image}`).toMatch(/No problems found/);
  expect(output, `sgdisk -v ${image}`).not.toMatch(/Warning|Problem:|Caution/i);
}

export interface GptPartitionInfo {
  typeGuid: string;
  guid: string;
  firstSector: number;
  lastSector: number;
  name: string;
}

/** `sgdisk -i N`: the partition's GUIDs, sectors and name. */
export async function gptPartition(image: string, index: number): Promise<GptPartitionInfo> {
  const output = await run('sgdisk', ['-i', String(index), image]);
  const field = (label: RegExp) => {
    const match = label.exec(output);
    if (!match) throw new Error(`sgdisk -i ${index} ${image} printed no ${label}:\n${output}`);
    return match[1]!.trim();
  };
  return {
    typeGuid: field(/Partition GUID code: (\S+)/),
    guid: field(/Partition unique GUID: (\S+)/),
    firstSector: Number(field(/First sector: (\d+)/)),
    lastSector: Number(field(/Last sector: (\d+)/)),
    name: field(/Partition name: '(.*)'/),
  };
}

/** The disk GUID `sgdisk -p` prints. */
export async function gptDiskGuid(image: string): Promise<string> {
  const match = /Disk identifier \(GUID\): (\S+)/.exec(await run('sgdisk', ['-p', image]));
  if (!match) throw new Error(`sgdisk -p ${image} printed no disk GUID`);
  return match[1]!;
}

/** The UUID of the filesystem at byte `offset` of an image or device, as its superblock holds it (`blkid -p`: probed, not from a cache). */
export async function filesystemUuid(image: string, offset = 0): Promise<string> {
  const uuid = (await run('blkid', ['-p', '-O', String(offset), '-o', 'value', '-s', 'UUID', image])).trim();
  if (!uuid) throw new Error(`blkid -p found no filesystem UUID at byte ${offset} of ${image}`);
  return uuid;
}

/** Bytes of the ext2/3/4 filesystem on `device` (dumpe2fs block count × block size). */
export async function ext4Bytes(device: string): Promise<number> {
  const header = await run('dumpe2fs', ['-h', device]);
  const count = /^Block count:\s*(\d+)/m.exec(header);
  const size = /^Block size:\s*(\d+)/m.exec(header);
  if (!count || !size) throw new Error(`dumpe2fs -h ${device} printed no block count or size`);
  return Number(count[1]) * Number(size[1]);
}
