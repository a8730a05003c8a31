// Btrfs volumes backed up in `used` mode through the real CLI: a filesystem written through the
// kernel (files written, some deleted, so block groups hold freed space) over stale bytes,
// restored and checked with `btrfs check`, mounted read-only and compared file by file; the
// same volume cloned by partclone.btrfs for comparison; a RAID1 pair imaged exactly with the
// reason. The mapper's own tests (every mkfs variant, damage, fuzz) are in
// packages/source-volume/src/filesystems/btrfs*.test.ts.
import { createHash } from 'node:crypto';
import { open, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  MiB,
  Scope,
  attachLoop,
  backup,
  cairnOk,
  describeWithLoopDevices,
  init,
  mountDevice,
  parseJson,
  randomBytesFor,
  restore,
  run,
  runCommand,
  tempDir,
  unmount,
  useSuiteScope,
  useTempDir,
  writeFileTree,
  writeJob,
} from './utils/index.js';

const SIZE = 192 * MiB;

/** Stale, incompressible bytes over the whole image, as a reused disk holds. */
async function writeStaleImage(path: string, size: number, seed: string): Promise<void> {
  const handle = await open(path, 'w');
  try {
    const piece = randomBytesFor(seed, 16 * MiB);
    for (let at = 0; at < size; at += piece.length) await handle.write(piece, 0, Math.min(piece.length, size - at), at);
  } finally {
    await handle.close();
  }
}

/** Relative path → sha256 and size of every regular file under `dir`. */
async function digestTree(dir: string): Promise<Map<string, string>> {
  const digests = new Map<string, string>();
  const walk = async (folder: string): Promise<void> => {
    for (const entry of await readdir(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) {
        const data = await readFile(path);
        digests.set(relative(dir, path), `${createHash('sha256').update(data).digest('hex')} ${data.length}`);
      }
    }
  };
  await walk(dir);
  return digests;
}

/** `btrfs check` of an image finds nothing wrong. */
async function expectCleanBtrfsCheck(image: string): Promise<void> {
  const result = await runCommand('btrfs', ['check', '--readonly', image]);
  expect(result.exitCode, result.stdout + result.stderr).toBe(0);
  expect(result.stdout + result.stderr).toMatch(/no error found/);
}

/** Mounts `image` read-only on a loop device, runs `use` with the mount point, undoes both. */
async function withMountedImage<T>(image: string, mountPoint: string, use: (dir: string) => Promise<T>): Promise<T> {
  const scope = new Scope();
  try {
    const device = await attachLoop(scope, image, { readOnly: true });
    await mountDevice(scope, device, mountPoint, ['ro']);
    return await use(mountPoint);
  } finally {
    await scope.dispose();
  }
}

describeWithLoopDevices('a Btrfs volume written through the kernel, backed up in used mode', () => {
  const suite = useSuiteScope();
  let dir: string;
  let image: string;
  let job: string;
  /** The files on the volume after the writes and deletions, by sha256. */
  let files: Map<string, string>;
  /** Bytes of the files still on the volume. */
  let liveBytes: number;
  /** What the used-mode backup read. */
  let usedModeBytesRead: number;

  beforeAll(async () => {
    dir = await tempDir(suite, 'cairn-btrfs-');
    image = join(dir, 'btrfs.img');
    await writeStaleImage(image, SIZE, 'btrfs-stale');
    await run('mkfs.btrfs', ['-q', '-f', '-K', image]); // -K: no discard, the stale bytes stay in free space
    // Write through the kernel, delete most of the big files (their block group space is freed), unmount.
    await withWritableMount(image, join(dir, 'mnt'), async (mnt) => {
      await writeFileTree(join(mnt, 'keep'), { seed: 17, randomBytes: 12 * MiB, textBytes: 3 * MiB, zeroBytes: 1 * MiB, filesPerKind: 8 });
      await writeFileTree(join(mnt, 'gone'), { seed: 18, randomBytes: 40 * MiB, textBytes: 1 * MiB, filesPerKind: 4 });
      await run('sync', []);
      await rm(join(mnt, 'gone'), { recursive: true });
      files = await digestTree(mnt);
    });
    liveBytes = [...files.values()].reduce((sum, value) => sum + Number(value.split(' ')[1]), 0);
    job = await writeJob(dir, { source: image, extra: { source: { type: 'volume', path: image, mode: 'used' } } });
    await init(job);
  });

  test('the snapshot holds the used blocks only; the restore passes btrfs check and holds every file', async () => {
    const summary = await backup(job);
    usedModeBytesRead = summary.bytesRead;
    const shown = parseJson(await cairnOk('show', job, ['latest', '--json']));
    expect(shown.layout.filesystem).toBe('btrfs');
    expect(shown.layout.mode).toBe('used');
    expect(shown.layout.note).toBeUndefined();

    const restored = join(dir, 'restored.img');
    await restore(job, 'latest', restored);
    expect((await stat(restored)).size).toBe(SIZE);
    await expectCleanBtrfsCheck(restored);
    await withMountedImage(restored, join(dir, 'mnt-restored'), async (mnt) => expect(await digestTree(mnt)).toEqual(files));
    // The 40 MiB deleted are not stored: what is read is the live files (~16 MiB), metadata
    // (DUP), the first MiB and the system chunks (2 × 8 MiB of stale bytes on this mkfs).
    const systemChunkBytes = 16 * MiB;
    expect(summary.bytesRead).toBeGreaterThan(liveBytes);
    expect(summary.bytesRead).toBeLessThan(liveBytes + MiB + systemChunkBytes + 12 * MiB);
    expect(summary.bytesAdded).toBeLessThan(liveBytes + MiB + systemChunkBytes + 12 * MiB);
    console.log(`btrfs used mode: live files ${liveBytes} bytes, read ${summary.bytesRead}, stored ${summary.bytesAdded} of a ${SIZE}-byte volume`);
  });

  test('btrfs-progs agrees: the extents dump-tree lists are all in the restored image, identical to the original', async () => {
    const restored = join(dir, 'restored.img');
    // The trees dump identically from the original and the restore (they were read from the restored bytes).
    for (const tree of ['chunk', 'root', 'extent', 'fs']) {
      expect(await run('btrfs', ['inspect-internal', 'dump-tree', '-t', tree, restored]), tree).toBe(await run('btrfs', ['inspect-internal', 'dump-tree', '-t', tree, image]));
    }
  });

  test('partclone.btrfs: its clone restores to a filesystem with the same trees and files; the figures compared', async () => {
    const clone = join(dir, 'btrfs.pc');
    await run('partclone.btrfs', ['-c', '-s', image, '-O', clone, '-L', join(dir, 'partclone-clone.log')]);
    // partclone.info's "Space in use" is not what the clone holds (it reports 4 MiB here while
    // the clone restores 16 MiB of files); the clone file's size is: blocks plus a small header.
    const partcloneBytes = (await stat(clone)).size;
    const fromPartclone = join(dir, 'partclone-restored.img');
    await writeFile(fromPartclone, '');
    await truncate(fromPartclone, SIZE);
    await run('partclone.btrfs', ['-r', '-s', clone, '-O', fromPartclone, '-L', join(dir, 'partclone-restore.log')]);
    // Meaningful to compare: both restores are filesystems btrfs check passes, whose trees and
    // files are the same. Not meaningful: the block sets. partclone.btrfs also copies stale tree
    // blocks no tree references any more (freed by copy-on-write) and leaves out the system
    // chunks' free space and the first MiB, which cairn keeps (boot loaders live there).
    await expectCleanBtrfsCheck(fromPartclone);
    const ours = join(dir, 'restored.img');
    for (const tree of ['chunk', 'extent', 'fs']) {
      expect(await run('btrfs', ['inspect-internal', 'dump-tree', '-t', tree, fromPartclone]), tree).toBe(await run('btrfs', ['inspect-internal', 'dump-tree', '-t', tree, ours]));
    }
    await withMountedImage(fromPartclone, join(dir, 'mnt-partclone'), async (mnt) => expect(await digestTree(mnt)).toEqual(files));
    console.log(`btrfs: partclone.btrfs's clone holds ${partcloneBytes} bytes; cairn read ${usedModeBytesRead} (the first MiB and the system chunks included)`);
    expect(partcloneBytes).toBeGreaterThan(liveBytes);
  });
});

/** Mounts `image` read-write on a loop device for `use`, then unmounts and detaches it. */
async function withWritableMount(image: string, mountPoint: string, use: (dir: string) => Promise<void>): Promise<void> {
  const scope = new Scope();
  try {
    const device = await attachLoop(scope, image);
    await mountDevice(scope, device, mountPoint);
    await use(mountPoint);
    await unmount(mountPoint);
  } finally {
    await scope.dispose();
  }
}

describeWithLoopDevices('a Btrfs volume copied while mounted, after an fsync', () => {
  test('has a log tree whose blocks the extent tree does not list, so it is imaged exactly with "log tree present"', async () => {
    const dir = await useTempDir('cairn-btrfs-log-');
    const image = join(dir, 'live.img');
    await writeStaleImage(image, 160 * MiB, 'btrfs-log');
    await run('mkfs.btrfs', ['-q', '-f', '-K', image]);
    const copy = join(dir, 'copy.img');
    await withWritableMount(image, join(dir, 'mnt'), async (mnt) => {
      await run('sync', []);
      // dd conv=fsync: an fsync, which Btrfs answers by writing a log tree and pointing the superblock at it.
      await run('dd', ['if=/dev/urandom', `of=${join(mnt, 'fsynced.bin')}`, 'bs=64k', 'count=4', 'conv=fsync', 'status=none']);
      await run('cp', ['--sparse=never', image, copy]); // what a backup of the live device reads
    });
    const logRoot = /^log_root\s+(\d+)$/m.exec(await run('btrfs', ['inspect-internal', 'dump-super', copy]))![1]!;
    expect(Number(logRoot)).toBeGreaterThan(0);
    // The log tree's blocks are not in the extent tree: a map from it alone would leave them out.
    expect(await run('btrfs', ['inspect-internal', 'dump-tree', '-t', 'extent', copy])).not.toContain(`(${logRoot} `);
    const job = await writeJob(dir, { source: copy, extra: { source: { type: 'volume', path: copy, mode: 'used' } } });
    await init(job);
    const result = await cairnOk('backup', job, ['--json']);
    expect(result.stderr).toMatch(/btrfs: log tree present .*; imaged exactly/);
    const shown = parseJson(await cairnOk('show', job, ['latest', '--json']));
    expect(shown.layout.mode).toBe('exact');
    expect(shown.layout.note).toMatch(/^btrfs: log tree present/);
  });
});

describe('a Btrfs RAID1 pair', () => {
  test('each device is imaged exactly, and the snapshot says it is multi-device Btrfs', async () => {
    const dir = await useTempDir('cairn-btrfs-raid-');
    const first = join(dir, 'a.img');
    const second = join(dir, 'b.img');
    for (const [path, seed] of [[first, 'a'], [second, 'b']] as const) await writeStaleImage(path, 128 * MiB, seed);
    await run('mkfs.btrfs', ['-q', '-f', '-K', '-d', 'raid1', '-m', 'raid1', first, second]);
    const job = await writeJob(dir, { source: first, extra: { source: { type: 'volume', path: first, mode: 'used' } } });
    await init(job);
    const result = await cairnOk('backup', job, ['--json']);
    expect(result.stderr).toMatch(/btrfs: multi-device Btrfs \(2 devices\) is not supported; imaged exactly/);
    const shown = parseJson(await cairnOk('show', job, ['latest', '--json']));
    expect(shown.layout.mode).toBe('exact');
    expect(shown.layout.note).toMatch(/^btrfs: multi-device Btrfs/);
    const restored = join(dir, 'restored.img');
    await restore(job, 'latest', restored);
    expect((await readFile(restored)).equals(await readFile(first))).toBe(true);
  });
});
