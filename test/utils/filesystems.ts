import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from './exec.js';
import { unmount } from './loop.js';
import { randomBytesFor, writeFileTree, type TreeFile, type TreeSpec } from './volume.js';
import { zeroFile } from './disk.js';

/*
 * FAT32 and NTFS partition images made with the real tools, for the disks `cairn mount`
 * and `cairn export` are tested on: mkfs.vfat + mtools' mcopy (no mount needed), mkntfs +
 * ntfs-3g (a FUSE mount of the image file, no loop device).
 */

export interface FilesystemImage {
  image: string;
  /** The folder the files were copied from. */
  tree: string;
  files: TreeFile[];
}

/**
 * Files with long, mixed-case names and spaces: FAT keeps them only in long-name entries
 * (a FAT driver without them would show `QUARTE~1.TXT`).
 */
const FAT_FILES: ReadonlyArray<{ path: string; size: number }> = [
  { path: 'Documents/Quarterly Report 2024.txt', size: 12_345 },
  { path: 'Documents/Budget Forecast.bin', size: 700_001 },
  { path: 'Photos/Holiday Picture Number 01.bin', size: 1_500_000 },
  { path: 'EFI/Boot/Startup Loader.efi', size: 65_536 },
  { path: 'Readme For Everyone.txt', size: 999 },
];

/** A FAT32 image of `size` bytes (≥ 33 MiB, FAT32's minimum with 512-byte clusters) holding FAT_FILES. */
export async function makeFat32(dir: string, name: string, size: number): Promise<FilesystemImage> {
  const tree = join(dir, `${name}-tree`);
  const files: TreeFile[] = [];
  for (const file of FAT_FILES) {
    await mkdir(dirname(join(tree, file.path)), { recursive: true });
    await writeFile(join(tree, file.path), randomBytesFor(`fat/${file.path}`, file.size));
    files.push({ path: file.path, kind: 'random', size: file.size });
  }
  const image = join(dir, `${name}.img`);
  await zeroFile(image, size);
  await run('mkfs.vfat', ['-F', '32', '-s', '1', '-n', 'CAIRNFAT', image]);
  for (const top of ['Documents', 'Photos', 'EFI', 'Readme For Everyone.txt']) await run('mcopy', ['-s', '-i', image, join(tree, top), '::/']);
  return { image, tree, files };
}

/** An NTFS image of `size` bytes holding a file tree (see writeFileTree), copied in through ntfs-3g. */
export async function makeNtfs(dir: string, name: string, size: number, spec: TreeSpec): Promise<FilesystemImage> {
  const tree = join(dir, `${name}-tree`);
  const files = await writeFileTree(tree, spec);
  const image = join(dir, `${name}.img`);
  await zeroFile(image, size);
  await run('mkntfs', ['-q', '-F', '-Q', '-L', 'CAIRNNTFS', image]);
  const mountPoint = join(dir, `${name}-mnt`);
  await mkdir(mountPoint);
  // In the foreground, so that its end (every write flushed) can be awaited after the unmount.
  const ntfs = spawn('ntfs-3g', ['-o', 'no_detach', image, mountPoint], { stdio: 'ignore' });
  const ended = new Promise<void>((resolve) => ntfs.on('close', () => resolve()));
  try {
    await waitForMount(mountPoint);
    await run('cp', ['-r', `${tree}/.`, mountPoint]);
  } finally {
    await unmount(mountPoint);
    await ended;
  }
  return { image, tree, files };
}

async function waitForMount(mountPoint: string): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const mounts = await readFile('/proc/self/mounts', 'utf8');
    if (mounts.split('\n').some((line) => line.split(' ')[1] === mountPoint)) return;
    await sleep(50);
  }
  throw new Error(`${mountPoint} was not mounted after 10 s`);
}

/** A swap partition image (mkswap): a filesystem `cairn mount` skips. */
export async function makeSwap(dir: string, name: string, size: number): Promise<string> {
  const image = join(dir, `${name}.img`);
  await zeroFile(image, size);
  await run('mkswap', ['-q', image]);
  return image;
}
