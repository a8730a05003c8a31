import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  allocatedBytes,
  backup,
  expectCleanFailure,
  expectSuccess,
  init,
  isAlive,
  makeExt4,
  makeGptDisk,
  parseJson,
  randomBytesFor,
  run,
  runCli,
  runCommand,
  startCli,
  tempDir,
  useSuiteScope,
  useTempDir,
  writeJob,
  type PlacedPartition,
} from './utils/index.js';
import { makeFat32 } from './utils/filesystems.js';

/*
 * "`qemu-img convert` to qcow2 and vhdx, then `qemu-img compare` with the original image":
 * `cairn export` of an exactly imaged GPT disk (so the snapshot is the original, byte for
 * byte) to each format, compared by qemu-img with the disk it was made from.
 */

interface ExportJson {
  snapshot: string;
  format: string;
  destination: string;
  partition?: number;
  virtualSize: number;
  allocatedBytes: number;
}

const DISK = 96 * MiB;

function cairnExport(job: string, format: string, to: string, extra: string[] = []) {
  return runCli(['export', job, 'latest', '--format', format, '--to', to, ...extra], { env: PASSWORD_ENV });
}

/** `qemu-img compare` of the original raw image with the exported one: exit 0 and "Images are identical". */
async function expectIdentical(original: string, exported: string, format: string): Promise<void> {
  const compared = await runCommand('qemu-img', ['compare', '-f', 'raw', '-F', format, original, exported]);
  expect(compared.exitCode, `qemu-img compare: ${compared.stdout}${compared.stderr}`).toBe(0);
  expect(compared.stdout).toMatch(/Images are identical/);
}

async function imageFormat(path: string): Promise<{ format: string; 'virtual-size': number }> {
  return JSON.parse(await run('qemu-img', ['info', '--output=json', path]));
}

describe('cairn export to raw, qcow2, vhdx and vmdk', () => {
  const scope = useSuiteScope();
  let dir: string;
  let disk: string;
  let job: string;
  let placed: PlacedPartition[];
  let fatImage: string;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-export-');
    const root = await makeExt4(dir, 'root', 40 * MiB, { seed: 7, randomBytes: 5 * MiB, textBytes: 2 * MiB, zeroBytes: MiB });
    const fat = await makeFat32(dir, 'efi', 36 * MiB);
    fatImage = fat.image;
    disk = join(dir, 'disk.img');
    placed = await makeGptDisk(disk, DISK, [
      { image: root.image, size: 40 * MiB, name: 'root' },
      { image: fat.image, size: 36 * MiB, type: 'ef00', name: 'EFI system' },
    ]);
    job = await writeJob(dir, { source: disk });
    await init(job, { env: PASSWORD_ENV });
    await backup(job, { env: PASSWORD_ENV });
  }, 120_000);

  for (const format of ['qcow2', 'vhdx', 'vmdk', 'raw']) {
    test(`${format}: qemu-img compare finds it identical to the original disk`, async () => {
      const out = join(await useTempDir('cairn-export-out-'), `disk.${format}`);
      const result = await cairnExport(job, format, out, ['--json']);
      expectSuccess(result);
      const exported = parseJson<ExportJson>(result);
      expect(exported).toMatchObject({ format, destination: out, virtualSize: DISK });
      expect(exported.allocatedBytes).toBe(await allocatedBytes(out));
      const info = await imageFormat(out);
      expect(info.format).toBe(format);
      expect(info['virtual-size']).toBeGreaterThanOrEqual(DISK);
      await expectIdentical(disk, out, format);
      // Zeros (free space, the gap after the partitions) are not written out.
      expect(exported.allocatedBytes).toBeLessThan(DISK / 2);
    }, 120_000);
  }

  test('--partition 2: the FAT partition alone, identical to the filesystem image it was made from', async () => {
    const out = join(await useTempDir('cairn-export-out-'), 'efi.qcow2');
    const result = await cairnExport(job, 'qcow2', out, ['--partition', '2', '--json']);
    expectSuccess(result);
    expect(parseJson<ExportJson>(result)).toMatchObject({ partition: 2, virtualSize: placed[1]!.size });
    await expectIdentical(fatImage, out, 'qcow2');
  }, 120_000);

  test('an existing file is replaced only with --force; nothing is left under a temporary name', async () => {
    const outDir = await useTempDir('cairn-export-out-');
    const out = join(outDir, 'disk.qcow2');
    await writeFile(out, 'an earlier export');
    expectCleanFailure(await cairnExport(job, 'qcow2', out), 1, /exists; add --force/);
    expect(await readFile(out, 'utf8')).toBe('an earlier export');
    expectSuccess(await cairnExport(job, 'qcow2', out, ['--force']));
    await expectIdentical(disk, out, 'qcow2');
    expect(await readdir(outDir)).toEqual(['disk.qcow2']);
  }, 120_000);

  test('bad usage: an unknown format, a partition the snapshot lacks', async () => {
    const outDir = await useTempDir('cairn-export-out-');
    const unknown = await cairnExport(job, 'vdi', join(outDir, 'disk.vdi'));
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toMatch(/format/);
    expectCleanFailure(await cairnExport(job, 'raw', join(outDir, 'p7.img'), ['--partition', '7']), 2, /no partition 7/);
    expect(await readdir(outDir)).toEqual([]);
  }, 60_000);

  test('SIGTERM during an export: exit 143, no partial file, and the NBD server and qemu-img it started are gone', async () => {
    const work = await useTempDir('cairn-export-stop-');
    // Incompressible data, so that qemu-img has seconds of work to be stopped in.
    const source = join(work, 'random.img');
    await writeFile(source, randomBytesFor('export-stop', 384 * MiB));
    const bigJob = await writeJob(work, { source, compression: { type: 'zstd', level: 1 } });
    await init(bigJob, { env: PASSWORD_ENV });
    await backup(bigJob, { env: PASSWORD_ENV });
    const outDir = join(work, 'out');
    await mkdir(outDir);
    const running = startCli(['export', bigJob, 'latest', '--format', 'qcow2', '--to', join(outDir, 'disk.qcow2')], { env: PASSWORD_ENV });
    const partial = async () => (await readdir(outDir)).find((name) => name.startsWith('.disk.qcow2.cairn-export-'));
    const deadline = Date.now() + 60_000;
    while (running.child.exitCode === null && Date.now() < deadline && !(await partial())) await sleep(10);
    expect(running.child.exitCode, 'the export finished before it could be stopped; make the volume larger').toBeNull();
    const children = await descendants(running.child.pid!);
    expect(children.length).toBeGreaterThan(0);
    running.child.kill('SIGTERM');
    const result = await running.result;
    expect(result.exitCode, result.stderr).toBe(143);
    expect(result.stderr).toContain('Stopped by SIGTERM');
    expect(await readdir(outDir)).toEqual([]);
    // cairn serve (detached: in its own session) and qemu-img, by the pids they had.
    for (const pid of children) expect(await isAlive(pid), `process ${pid} is still running`).toBe(false);
  }, 180_000);
});

/** Pids of the processes whose parent is `pid` (cairn serve and qemu-img, for a running export). */
async function descendants(pid: number): Promise<number[]> {
  const children = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
  return children.trim().split(/\s+/).filter(Boolean).map(Number);
}

