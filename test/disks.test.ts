import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, writeFile, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  MiB,
  attachLoop,
  backup,
  cairnOk,
  e2fsck,
  init,
  parseJson,
  run,
  runCommand,
  restore,
  sameBytes,
  tempDir,
  useScope,
  useSuiteScope,
  useTempDir,
  writeFileTree,
  writeJob,
  type TreeFile,
} from './utils/index.js';

/*
 * Whole disks and filesystems made with the real tools, with stale random data in their free
 * space first, imaged in `used` mode: the restored filesystems must check clean and hold every
 * file, the partition table must come back as it was, and free space must not be stored.
 */

const SECTOR = 512;

async function fillWithStaleData(path: string, size: number): Promise<void> {
  const handle = await open(path, 'w');
  const block = randomBytes(4 * MiB);
  for (let at = 0; at < size; at += block.length) {
    block[0] = at & 0xff; // blocks differ, so dedup cannot hide stored stale data
    await handle.write(block, 0, Math.min(block.length, size - at), at);
  }
  await handle.close();
}

/** Copies a partition image into the disk image at `offsetSectors`. */
async function placePartition(disk: string, partition: string, offsetSectors: number): Promise<void> {
  await run('dd', [`if=${partition}`, `of=${disk}`, 'bs=1M', `seek=${offsetSectors * SECTOR}`, 'oflag=seek_bytes', 'conv=notrunc', 'status=none']);
}

async function makeExt4(dir: string, size: number, seed: number): Promise<{ image: string; files: TreeFile[]; tree: string }> {
  const tree = join(dir, `ext4-tree-${seed}`);
  const files = await writeFileTree(tree, { seed, randomBytes: 5 * MiB, textBytes: 3 * MiB, zeroBytes: MiB });
  const image = join(dir, `ext4-${seed}.img`);
  await fillWithStaleData(image, size);
  await run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', '-d', tree, image]);
  return { image, files, tree };
}

async function makeFat32(dir: string, size: number, tree: string, files: TreeFile[]): Promise<string> {
  const image = join(dir, 'fat32.img');
  await fillWithStaleData(image, size);
  await run('mkfs.vfat', ['-F', '32', '-n', 'CAIRNFAT', image]);
  await run('mmd', ['-i', image, '::/data']);
  for (const file of files.slice(0, 6)) await run('mcopy', ['-i', image, join(tree, file.path), `::/data/${file.path.replaceAll('/', '_')}`]);
  return image;
}

async function makeNtfs(dir: string, size: number, tree: string, files: TreeFile[]): Promise<string> {
  const image = join(dir, 'ntfs.img');
  await fillWithStaleData(image, size);
  await run('mkntfs', ['-q', '-F', '-Q', '-L', 'CAIRNNTFS', image]);
  for (const file of files.slice(0, 6)) await run('ntfscp', ['-q', image, join(tree, file.path), file.path.replaceAll('/', '_')]);
  return image;
}

async function sha(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

/** `sfdisk -d` without the line naming the device, for comparing tables of two images. */
async function partitionTable(image: string): Promise<string> {
  const dump = await run('sfdisk', ['-d', image]);
  return dump
    .split('\n')
    .filter((line) => !line.startsWith('device:'))
    .map((line) => line.replace(/^\S+?(\d+) :/, 'part$1 :'))
    .join('\n');
}

async function filesystemHolds(kind: 'ext4' | 'vfat' | 'ntfs', image: string, tree: string, files: TreeFile[], dir: string): Promise<void> {
  for (const file of kind === 'ext4' ? files : files.slice(0, 6)) {
    const out = join(dir, `readback-${kind}`);
    if (kind === 'ext4') await run('debugfs', ['-R', `dump /${file.path} ${out}`, image]);
    if (kind === 'vfat') await run('mcopy', ['-o', '-i', image, `::/data/${file.path.replaceAll('/', '_')}`, out]);
    if (kind === 'ntfs') await writeFile(out, (await runBinary('ntfscat', [image, file.path.replaceAll('/', '_')])));
    expect(await sha(out), `${kind}: ${file.path}`).toBe(await sha(join(tree, file.path)));
  }
}

async function runBinary(command: string, args: string[]): Promise<Buffer> {
  const { spawn } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`${command} exited with ${code}`))));
  });
}

async function partitionImage(job: string, snapshot: string, index: number, dir: string): Promise<string> {
  const out = join(dir, `partition-${index}.img`);
  await cairnOk('restore', job, [snapshot, '--partition', String(index), '--to', out, '--force']);
  return out;
}

describe('a GPT disk with ext4, FAT32 and NTFS partitions, imaged in used mode', () => {
  const scope = useSuiteScope();
  let dir: string;
  let disk: string;
  let job: string;
  let ext4: { image: string; files: TreeFile[]; tree: string };
  let first: Awaited<ReturnType<typeof backup>>;
  const DISK = 256 * MiB;
  // sectors: p1 ext4 96 MiB, p2 FAT32 64 MiB, p3 NTFS 48 MiB
  const P1 = 2048, P2 = P1 + (96 * MiB) / SECTOR, P3 = P2 + (64 * MiB) / SECTOR;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-gpt-');
    ext4 = await makeExt4(dir, 96 * MiB, 31);
    const fat = await makeFat32(dir, 64 * MiB, ext4.tree, ext4.files);
    const ntfs = await makeNtfs(dir, 48 * MiB, ext4.tree, ext4.files);
    disk = join(dir, 'disk.img');
    await fillWithStaleData(disk, DISK);
    await run('sgdisk', ['-Z', disk]);
    await run('sgdisk', ['-n', `1:${P1}:+96M`, '-t', '1:8300', '-c', '1:root', '-n', `2:${P2}:+64M`, '-t', '2:0700', '-n', `3:${P3}:+48M`, '-t', '3:0700', disk]);
    await placePartition(disk, ext4.image, P1);
    await placePartition(disk, fat, P2);
    await placePartition(disk, ntfs, P3);
    job = await writeJob(dir, { source: disk, extra: { source: { type: 'volume', path: disk, mode: 'used' } } });
    await init(job);
    first = await backup(job);
  }, 300_000);

  test('the snapshot records the layout: partitions, filesystems, used bytes', async () => {
    const shown = parseJson(await cairnOk('show', job, ['latest', '--json']));
    expect(shown.layout.partitionTable.type).toBe('gpt');
    expect(shown.layout.partitions.map((p: any) => [p.index, p.filesystem, p.mode])).toEqual([
      [1, 'ext4', 'used'],
      [2, 'fat32', 'used'],
      [3, 'ntfs', 'used'],
    ]);
    for (const p of shown.layout.partitions) expect(p.usedBytes).toBeLessThan(p.size / 3);
    const text = (await cairnOk('show', job, ['latest'])).stdout;
    expect(text).toMatch(/ext4\s+used/);
  });

  test('stores about the used data, not the stale free space', () => {
    const used = 9 * MiB + 2 * 6 * MiB; // the files on ext4, and up to 6 of them on FAT32 and NTFS each
    expect(first.bytesAdded).toBeLessThan(used + 16 * MiB); // plus filesystem metadata and the GPT areas
    expect(first.bytesRead).toBeLessThan(DISK / 3);
  });

  test('restores a disk whose partition table and filesystems check clean and hold every file', async () => {
    const out = join(dir, 'restored.img');
    await restore(job, 'latest', out, { force: true });
    expect(await partitionTable(out)).toBe(await partitionTable(disk));
    expect((await run('sgdisk', ['-v', out]))).toMatch(/No problems found/);
    const p1 = await partitionImage(job, 'latest', 1, dir);
    expect((await e2fsck(p1)).exitCode).toBe(0);
    await filesystemHolds('ext4', p1, ext4.tree, ext4.files, dir);
    const p2 = await partitionImage(job, 'latest', 2, dir);
    expect((await runCommand('fsck.vfat', ['-n', p2])).exitCode).toBe(0);
    await filesystemHolds('vfat', p2, ext4.tree, ext4.files, dir);
    const p3 = await partitionImage(job, 'latest', 3, dir);
    expect((await runCommand('ntfsfix', ['-n', p3])).exitCode).toBe(0);
    await filesystemHolds('ntfs', p3, ext4.tree, ext4.files, dir);
  });

  test('restores onto a larger disk, moving the backup GPT to the new end', async () => {
    const bigger = join(dir, 'bigger.img');
    await cairnOk('restore', job, ['latest', '--to', bigger, '--size', '384M', '--force']);
    const verify = await run('sgdisk', ['-v', bigger]);
    expect(verify).toMatch(/No problems found/);
    expect(await partitionTable(bigger)).toContain('last-lba: 786398');
    const loopScope = useScope();
    const deviceFile = join(dir, 'bigger-device.img');
    await writeFile(deviceFile, '');
    await truncate(deviceFile, 320 * MiB);
    const device = await attachLoop(loopScope, deviceFile);
    await cairnOk('restore', job, ['latest', '--to', device, '--force']);
    expect(await run('sgdisk', ['-v', device])).toMatch(/No problems found/);
  });

  test('on a block device, unused blocks are left as they are unless --zero-unused', async () => {
    const scope = useScope();
    const reference = join(dir, 'reference.img');
    await restore(job, 'latest', reference, { force: true });
    const deviceFile = join(dir, 'device.img');
    await writeFile(deviceFile, Buffer.alloc(DISK, 0xff));
    const device = await attachLoop(scope, deviceFile);
    await cairnOk('restore', job, ['latest', '--to', device, '--force']);
    expect(await sameBytes(device, reference)).toBe(false); // 0xff survives in unused blocks
    const p1 = join(dir, 'device-p1.img');
    await run('dd', [`if=${device}`, `of=${p1}`, 'bs=1M', `skip=${P1 * SECTOR}`, 'iflag=skip_bytes,count_bytes', `count=${96 * MiB}`, 'status=none']);
    expect((await e2fsck(p1)).exitCode).toBe(0);
    await cairnOk('restore', job, ['latest', '--to', device, '--force', '--zero-unused']);
    expect(await sameBytes(device, reference)).toBe(true);
  });

  test('an incremental backup of the unchanged disk adds almost nothing', async () => {
    const second = await backup(job);
    expect(second.bytesAdded).toBeLessThan(first.bytesAdded / 100);
  });
});

describe('an MBR disk with primary, extended and logical partitions', () => {
  test('round-trips, with the table and the logical ext4 partition intact', async () => {
    const dir = await useTempDir('cairn-mbr-');
    const ext4 = await makeExt4(dir, 48 * MiB, 41);
    const disk = join(dir, 'mbr.img');
    await fillWithStaleData(disk, 128 * MiB);
    const script = 'label: dos\nstart=2048, size=32768, type=c\nstart=36864, type=5\nstart=38912, size=98304, type=83\n';
    const { spawnSync } = await import('node:child_process');
    expect(spawnSync('sfdisk', ['-q', disk], { input: script }).status).toBe(0);
    await placePartition(disk, ext4.image, 38912);
    const job = await writeJob(dir, { source: disk, extra: { source: { type: 'volume', path: disk, mode: 'used' } } });
    await init(job);
    const summary = await backup(job);
    expect(summary.bytesAdded).toBeLessThan(48 * MiB); // the stale FAT partition is imaged exactly (no filesystem), the ext4 one by its bitmaps
    const shown = parseJson(await cairnOk('show', job, ['latest', '--json']));
    expect(shown.layout.partitions.map((p: any) => [p.index, p.filesystem ?? null, p.mode])).toEqual([
      [1, null, 'exact'],
      [5, 'ext4', 'used'],
    ]);
    const out = join(dir, 'restored.img');
    await restore(job, 'latest', out);
    expect(await partitionTable(out)).toBe(await partitionTable(disk));
    const p5 = await partitionImage(job, 'latest', 5, dir);
    expect((await e2fsck(p5)).exitCode).toBe(0);
    await filesystemHolds('ext4', p5, ext4.tree, ext4.files, dir);
  });
});

describe('damaged or hostile metadata', () => {
  test('an ext4 group whose bitmap points past the end makes the volume imaged exactly, and the snapshot says why', async () => {
    const dir = await useTempDir('cairn-hostile-');
    const ext4 = await makeExt4(dir, 32 * MiB, 51);
    await run('debugfs', ['-w', '-R', 'set_bg 1 block_bitmap 99999999', ext4.image]);
    // debugfs cannot recompute the descriptor checksum here; either check (range or checksum) must refuse the map.
    const job = await writeJob(dir, { source: ext4.image, extra: { source: { type: 'volume', path: ext4.image, mode: 'used' } } });
    await init(job);
    const result = await cairnOk('backup', job, ['--json']);
    expect(result.stderr).toMatch(/ext4: group 1 .*; imaged exactly/);
    const shown = parseJson(await cairnOk('show', job, ['latest', '--json']));
    expect(shown.layout.mode).toBe('exact');
    expect(shown.layout.note).toMatch(/^ext4: group 1 /);
    const out = join(dir, 'restored.img');
    await restore(job, 'latest', out);
    expect(await sameBytes(out, ext4.image)).toBe(true);
  });

  test('a truncated FAT boot sector falls back to exact imaging', async () => {
    const dir = await useTempDir('cairn-hostile-fat-');
    const image = join(dir, 'fat.img');
    await fillWithStaleData(image, 16 * MiB);
    await run('mkfs.vfat', ['-F', '16', image]);
    const handle = await open(image, 'r+');
    await handle.write(Buffer.alloc(2), 0, 2, 22); // sectors per FAT = 0
    await handle.close();
    const job = await writeJob(dir, { source: image, extra: { source: { type: 'volume', path: image, mode: 'used' } } });
    await init(job);
    await backup(job);
    const shown = parseJson(await cairnOk('show', job, ['latest', '--json']));
    expect(shown.layout.mode).toBe('exact');
    const out = join(dir, 'restored.img');
    await restore(job, 'latest', out);
    expect(await sameBytes(out, image)).toBe(true);
  });
});
