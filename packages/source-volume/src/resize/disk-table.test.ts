import { execFileSync } from 'node:child_process';
import { mkdtemp, open, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { rewriteGpt, rewriteMbr } from './disk-table.js';
import { updateHiddenSectors } from './hidden-sectors.js';

const MiB = 1024 * 1024;
const run = (command: string, args: string[], input?: string): string => execFileSync(command, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });

let workDir: string;
beforeEach(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'cairn-disk-table-'));
});
afterEach(async () => {
  await rm(workDir, { recursive: true, force: true });
});

async function withHandle(file: string, body: (handle: Awaited<ReturnType<typeof open>>) => Promise<void>): Promise<void> {
  const handle = await open(file, 'r+');
  await body(handle).finally(() => handle.close());
}

/** sgdisk -i N without the lines that change when a partition moves. */
const identity = (disk: string, index: number) => run('sgdisk', ['-i', String(index), disk]).split('\n').filter((line) => !/sector|size/i.test(line));

it('rewriteGpt moves and resizes partitions on a smaller disk: sgdisk -v clean, GUIDs, types and names kept', async () => {
  const disk = path.join(workDir, 'disk.img');
  await writeFile(disk, '');
  await truncate(disk, 64 * MiB);
  run('sgdisk', ['-n', '1:2048:+20M', '-t', '1:ef00', '-c', '1:EFI', '-n', '2:0:+30M', '-c', '2:root', '-n', '3:0:+8M', '-t', '3:8200', '-c', '3:swap', disk]);
  const before = [1, 2, 3].map((i) => identity(disk, i));
  const diskGuid = /Disk identifier \(GUID\): (\S+)/.exec(run('sgdisk', ['-p', disk]))![1];

  await truncate(disk, 48 * MiB);
  await withHandle(disk, (handle) =>
    rewriteGpt(handle, 512, 48 * MiB, [
      { index: 2, offset: 21 * MiB, size: 16 * MiB },
      { index: 3, offset: 37 * MiB, size: 8 * MiB },
    ]),
  );
  expect(run('sgdisk', ['-v', disk])).toMatch(/No problems found/);
  expect([1, 2, 3].map((i) => identity(disk, i))).toEqual(before);
  expect(run('sgdisk', ['-p', disk])).toContain(diskGuid);
  expect(run('sgdisk', ['-i', '3', disk])).toMatch(/First sector: 75776 .*\nLast sector: 92159 /);
  // The protective MBR covers the smaller disk.
  const mbr = Buffer.alloc(512);
  await withHandle(disk, async (handle) => void (await handle.read(mbr, 0, 512, 0)));
  expect([mbr[446 + 4], mbr.readUInt32LE(446 + 12)]).toEqual([0xee, 48 * 2048 - 1]);
});

it('rewriteGpt refuses a partition that would overlap the backup GPT', async () => {
  const disk = path.join(workDir, 'disk.img');
  await writeFile(disk, '');
  await truncate(disk, 32 * MiB);
  run('sgdisk', ['-n', '1:2048:+20M', disk]);
  await withHandle(disk, async (handle) => {
    await expect(rewriteGpt(handle, 512, 32 * MiB, [{ index: 1, offset: MiB, size: 31 * MiB }])).rejects.toThrow(/does not fit the GPT/);
  });
});

it('rewriteMbr rewrites primary entries and keeps the disk id, types and boot flag', async () => {
  const disk = path.join(workDir, 'mbr.img');
  await writeFile(disk, '');
  await truncate(disk, 64 * MiB);
  run('sfdisk', ['-q', disk], 'label: dos\nlabel-id: 0xcafe0001\nstart=2048, size=40960, type=c, bootable\nstart=43008, size=40960, type=83\n');
  await withHandle(disk, (handle) => rewriteMbr(handle, 512, [{ index: 2, offset: 21 * MiB, size: 40 * MiB }]));
  const dump = run('sfdisk', ['-d', disk]);
  expect(dump).toMatch(/label-id: 0xcafe0001/);
  expect(dump).toMatch(/start=\s*2048, size=\s*40960, type=c, bootable/);
  expect(dump).toMatch(/start=\s*43008, size=\s*81920, type=83/);
  await withHandle(disk, async (handle) => {
    await expect(rewriteMbr(handle, 512, [{ index: 5, offset: MiB, size: MiB }])).rejects.toThrow(/logical MBR partition/);
  });
});

it('updateHiddenSectors tells a moved NTFS volume its new start, in the boot sector and its backup', async () => {
  const volume = path.join(workDir, 'ntfs.img');
  await writeFile(volume, '');
  await truncate(volume, 16 * MiB);
  run('mkfs.ntfs', ['-F', '-f', '-Q', '-p', '2048', volume]);
  const handle = await open(volume, 'r+');
  try {
    const read = async (at: number) => {
      const sector = Buffer.alloc(512);
      await handle.read(sector, 0, 512, at);
      return sector;
    };
    const boot = await read(0);
    expect(boot.readUInt32LE(0x1c)).toBe(2048);
    const backupAt = Number(boot.readBigUInt64LE(0x28)) * 512;
    await updateHiddenSectors(handle, 'ntfs', 0, 512); // at byte 0 of this file: start sector 0
    expect((await read(0)).readUInt32LE(0x1c)).toBe(0);
    expect((await read(backupAt)).readUInt32LE(0x1c)).toBe(0);
    // Nothing else of the boot sector changed.
    expect((await read(0)).subarray(0x20)).toEqual(boot.subarray(0x20));
    // ext4 has no such field: nothing is written.
    await updateHiddenSectors(handle, 'ext4', 0, 512);
  } finally {
    await handle.close();
  }
  // ntfsinfo still reads the volume.
  expect(run('ntfsinfo', ['-m', '-f', volume])).toMatch(/Volume Name/);
});
