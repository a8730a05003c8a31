import { existsSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawn } from 'node:child_process';
import { beforeAll, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  backup,
  describeWithLoopDevices,
  expectCleanFailure,
  expectSuccess,
  init,
  isAlive,
  makeExt4,
  makeGptDisk,
  mountPointsUnder,
  parseJson,
  run,
  runCli,
  startCli,
  sha256Of,
  tempDir,
  useSuiteScope,
  useTempDir,
  writeJob,
  type CliResult,
  type Scope,
  type TreeFile,
} from './utils/index.js';
import { makeFat32, makeNtfs, makeSwap, type FilesystemImage } from './utils/filesystems.js';

/*
 * "`cairn mount` of a GPT disk snapshot with ext4, FAT32 and NTFS partitions: files read back
 * identical to the originals; `cairn umount` leaves no mount, loop device or process behind."
 * The disk is made with the real tools, backed up in `used` mode with the real CLI, and
 * mounted through the NBD export (nbdfuse, read-only loop devices, the kernel, fusefat and
 * ntfs-3g).
 */

interface MountJson {
  snapshot: string;
  dir: string;
  socket: string;
  mounted: Array<{ partition: number; path: string; filesystem: string; driver: string; device: string }>;
  skipped: Array<{ partition: number; filesystem?: string; reason: string }>;
}

/** What `cairn mount` recorded in `<dir>/.cairn/mount.json`: the processes and devices it started. */
interface MountRecord {
  server: { process: { pid: number } };
  image: { path: string; process: { pid: number } };
  partitions: Array<{ device: string; path: string; process?: { pid: number } }>;
}

async function readRecord(dir: string): Promise<MountRecord> {
  return JSON.parse(await readFile(join(dir, '.cairn/mount.json'), 'utf8'));
}


/** Loop devices whose backing file lies under `dir`, from losetup's own listing. */
async function loopDevicesUnder(dir: string): Promise<string[]> {
  const list = await run('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE']);
  return list.split('\n').filter((line) => line.includes(dir));
}

function cairnMount(job: string, dir: string, extra: string[] = [], json = true): Promise<CliResult> {
  return runCli(['mount', job, 'latest', dir, ...(json ? ['--json'] : []), ...extra], { env: PASSWORD_ENV });
}

/** Whatever a failed test left mounted is undone by `cairn umount` itself before the folder goes. */
function umountAtTeardown(scope: Scope, dir: string): void {
  scope.defer(`cairn umount ${dir}`, async () => {
    if (existsSync(join(dir, '.cairn/mount.json'))) await runCli(['umount', dir]);
  });
}

async function expectSameFiles(mounted: string, original: FilesystemImage | { tree: string; files: TreeFile[] }): Promise<void> {
  expect(original.files.length).toBeGreaterThan(3);
  for (const file of original.files) {
    expect(await sha256Of(join(mounted, file.path)), file.path).toBe(await sha256Of(join(original.tree, file.path)));
  }
}

describeWithLoopDevices('cairn mount of a GPT disk with ext4, FAT32, NTFS and swap partitions', () => {
  const scope = useSuiteScope();
  let dir: string;
  let job: string;
  let ext4: FilesystemImage;
  let fat: FilesystemImage;
  let ntfs: FilesystemImage;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-mount-');
    ext4 = await makeExt4(dir, 'root', 48 * MiB, { seed: 16, randomBytes: 6 * MiB, textBytes: 2 * MiB, zeroBytes: MiB }, { stale: true });
    fat = await makeFat32(dir, 'efi', 40 * MiB);
    ntfs = await makeNtfs(dir, 'windows', 24 * MiB, { seed: 61, randomBytes: 3 * MiB, textBytes: MiB });
    const swap = await makeSwap(dir, 'swap', 8 * MiB);
    const disk = join(dir, 'disk.img');
    await makeGptDisk(disk, 128 * MiB, [
      { image: ext4.image, size: 48 * MiB, type: '8300', name: 'root' },
      { image: fat.image, size: 40 * MiB, type: 'ef00', name: 'EFI system' },
      { image: ntfs.image, size: 24 * MiB, type: '0700', name: 'Windows' },
      { image: swap, size: 8 * MiB, type: '8200', name: 'swap' },
    ], 'stale');
    job = await writeJob(dir, { source: disk, extra: { source: { type: 'volume', path: disk, mode: 'used' } } });
    await init(job, { env: PASSWORD_ENV });
    await backup(job, { env: PASSWORD_ENV });
  }, 180_000);

  test('every file reads back identical from ext4, FAT32 and NTFS; swap is skipped; umount leaves no mount, loop device or process', async () => {
    const mountDir = join(await useTempDir('cairn-mnt-'), 'snapshot');
    umountAtTeardown(scope, mountDir);
    const result = await cairnMount(job, mountDir);
    expectSuccess(result);
    const mounted = parseJson<MountJson>(result);
    expect(mounted.mounted.map((m) => [m.partition, m.path, m.filesystem])).toEqual([
      [1, join(mountDir, 'p1'), 'ext4'],
      [2, join(mountDir, 'p2'), 'vfat'],
      [3, join(mountDir, 'p3'), 'ntfs'],
    ]);
    expect(mounted.mounted.map((m) => m.driver)).toEqual(['kernel', expect.stringMatching(/^(kernel|fusefat)$/), 'ntfs-3g']);
    expect(mounted.skipped).toEqual([{ partition: 4, filesystem: 'swap', reason: expect.stringMatching(/swap/) }]);
    await expectSameFiles(join(mountDir, 'p1'), ext4);
    await expectSameFiles(join(mountDir, 'p2'), fat);
    await expectSameFiles(join(mountDir, 'p3'), ntfs);
    await expect(writeFile(join(mountDir, 'p1/new-file'), 'x')).rejects.toMatchObject({ code: 'EROFS' });
    await expect(writeFile(join(mountDir, 'p3/new-file'), 'x')).rejects.toMatchObject({ code: expect.stringMatching(/^(EROFS|EACCES|EPERM)$/) });

    const record = await readRecord(mountDir);
    const pids = [record.server.process.pid, record.image.process.pid, ...record.partitions.flatMap((p) => (p.process ? [p.process.pid] : []))];
    expect(pids.length).toBeGreaterThanOrEqual(3); // the server, nbdfuse, ntfs-3g (and fusefat where FAT is FUSE)
    for (const pid of pids) expect(await isAlive(pid), `pid ${pid} runs while mounted`).toBe(true);
    expect(await loopDevicesUnder(mountDir)).toHaveLength(3);

    expectSuccess(await runCli(['umount', mountDir]));
    expect(await mountPointsUnder(mountDir)).toEqual([]);
    expect(await loopDevicesUnder(mountDir)).toEqual([]);
    for (const pid of pids) expect(await isAlive(pid), `pid ${pid} ended`).toBe(false);
    expect(await readdir(mountDir)).toEqual([]);
    // Nothing left to undo: a second umount refuses, as for any folder cairn did not mount.
    expectCleanFailure(await runCli(['umount', mountDir]), 1, /was not mounted by cairn mount/);
  }, 120_000);

  test('--partition 3 mounts the NTFS partition alone', async () => {
    const mountDir = join(await useTempDir('cairn-mnt-'), 'windows');
    umountAtTeardown(scope, mountDir);
    const result = await cairnMount(job, mountDir, ['--partition', '3']);
    expectSuccess(result);
    expect(parseJson<MountJson>(result).mounted.map((m) => m.partition)).toEqual([3]);
    expect((await readdir(mountDir)).sort()).toEqual(['.cairn', 'p3']);
    await expectSameFiles(join(mountDir, 'p3'), ntfs);
    expectSuccess(await runCli(['umount', mountDir]));
    expect(await mountPointsUnder(mountDir)).toEqual([]);
    expect(await loopDevicesUnder(mountDir)).toEqual([]);
  }, 120_000);

  test('umount refuses while a file is open inside, and works once it is closed', async () => {
    const mountDir = join(await useTempDir('cairn-mnt-'), 'busy');
    umountAtTeardown(scope, mountDir);
    expectSuccess(await cairnMount(job, mountDir, ['--partition', '1']));
    const holder = spawn('sleep', ['600'], { cwd: join(mountDir, 'p1'), stdio: 'ignore' });
    const holderEnded = new Promise<void>((resolve) => holder.on('close', () => resolve()));
    try {
      expectCleanFailure(await runCli(['umount', mountDir]), 1, /in use/);
      // Nothing was undone: the filesystem still reads.
      await expectSameFiles(join(mountDir, 'p1'), ext4);
    } finally {
      holder.kill('SIGTERM');
      await holderEnded;
    }
    expectSuccess(await runCli(['umount', mountDir]));
    expect(await mountPointsUnder(mountDir)).toEqual([]);
  }, 120_000);

  test('SIGTERM while mounting: what was done is undone (server, nbdfuse, loop devices, mounts), exit 143', async () => {
    const mountDir = join(dir, 'stopped');
    umountAtTeardown(scope, mountDir);
    const running = startCli(['mount', job, 'latest', mountDir], { env: PASSWORD_ENV });
    // Stopped once its NBD server is recorded: from then on there is something to undo.
    const deadline = Date.now() + 60_000;
    let record: MountRecord | undefined;
    while (running.child.exitCode === null && Date.now() < deadline && !record?.server) {
      record = await readRecord(mountDir).catch(() => undefined);
      await sleep(10);
    }
    expect(running.child.exitCode, 'the mount finished before it could be stopped').toBeNull();
    running.child.kill('SIGTERM');
    const result = await running.result;
    expect(result.exitCode, result.stderr).toBe(143);
    expect(await isAlive(record!.server.process.pid)).toBe(false);
    expect(await mountPointsUnder(mountDir)).toEqual([]);
    expect(await loopDevicesUnder(mountDir)).toEqual([]);
    expect(await readdir(mountDir)).toEqual([]);
  });

  test('refusals: a folder that is not empty, a partition the snapshot lacks, a folder cairn did not mount', async () => {
    const base = await useTempDir('cairn-mnt-');
    await writeFile(join(base, 'precious.txt'), 'keep me');
    expectCleanFailure(await cairnMount(job, base, [], false), 1, /not empty/);
    expect(await readdir(base)).toEqual(['precious.txt']);
    expectCleanFailure(await cairnMount(job, join(base, 'none'), ['--partition', '9'], false), 2, /no partition 9/);
    expect(existsSync(join(base, 'none', '.cairn'))).toBe(false);
    expectCleanFailure(await runCli(['umount', base]), 1, /was not mounted by cairn mount/);
    expect(await readFile(join(base, 'precious.txt'), 'utf8')).toBe('keep me');
  }, 60_000);
});
