import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { OpenedSource } from '@cairn/core';
import { VolumeSourceFactory } from './volume-source.js';

const MiB = 1024 * 1024;
const run = (command: string, args: string[], input?: string): string =>
  execFileSync(command, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] }).trim();

let workDir: string;
const opened: OpenedSource[] = [];
const attachedLoops: string[] = [];
const mountPoints: string[] = [];
const factory = new VolumeSourceFactory();

async function openVolume(sourcePath: string, mode?: 'exact' | 'used'): Promise<OpenedSource> {
  const source = await factory.open({ type: 'volume', path: sourcePath, mode: mode ?? 'exact' }, { baseDir: workDir });
  opened.push(source);
  return source;
}

async function makeImage(name: string, size: number): Promise<string> {
  const image = path.join(workDir, name);
  await writeFile(image, '');
  await truncate(image, size);
  return image;
}

/** Attaches a loop device and records it for teardown, by the path losetup printed. */
function attachLoop(image: string, ...options: string[]): string {
  const device = run('losetup', ['-f', '--show', ...options, image]);
  attachedLoops.push(device);
  return device;
}

async function mountAt(device: string, name: string, ...options: string[]): Promise<string> {
  const mountPoint = path.join(workDir, name);
  await mkdir(mountPoint);
  run('mount', [...options, device, mountPoint]);
  mountPoints.push(mountPoint);
  return mountPoint;
}

beforeEach(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'cairn-blockdev-'));
});

afterEach(async () => {
  // Every step runs even if an earlier one fails: a leaked loop device or mount outlives the run.
  await Promise.allSettled(opened.splice(0).map((source) => source.dispose()));
  for (const mountPoint of mountPoints.splice(0).reverse()) {
    try {
      run('umount', [mountPoint]);
    } catch (err) {
      console.error(`teardown: umount ${mountPoint} failed`, err);
    }
  }
  for (const device of attachedLoops.splice(0).reverse()) {
    try {
      run('losetup', ['-d', device]);
    } catch (err) {
      console.error(`teardown: losetup -d ${device} failed`, err);
    }
  }
  await rm(workDir, { recursive: true, force: true });
});

describe('loop block devices', () => {
  it('takes size and sector size from sysfs and reads what the backing file holds', async () => {
    const image = path.join(workDir, 'disk.img');
    await writeFile(image, randomBytes(6 * MiB));
    const device = attachLoop(image, '--sector-size', '4096');

    const source = await openVolume(device);

    expect((await stat(device)).size).toBe(0); // why sysfs is needed at all
    expect(source.layout.kind).toBe('block-device');
    expect(source.layout.size).toBe(Number(run('blockdev', ['--getsize64', device])));
    expect(source.layout.size).toBe(6 * MiB);
    expect(source.layout.sectorSize).toBe(4096);
    expect(source.extents).toEqual([{ offset: 0, length: 6 * MiB }]);

    const read = Buffer.alloc(6 * MiB);
    await source.read(read, 0, read.length);
    expect(read.equals(await readFile(image))).toBe(true);
  });

  it('reports a 512-byte sector size for a default loop device and probes its filesystem', async () => {
    const image = await makeImage('ext4.img', 16 * MiB);
    run('mkfs.ext4', ['-q', '-F', image]);
    const device = attachLoop(image);

    const source = await openVolume(device);
    expect(source.layout).toMatchObject({ kind: 'block-device', size: 16 * MiB, sectorSize: 512, filesystem: 'ext4' });
    expect(source.warnings).toEqual([]);
  });

  it('sizes a partition mapped with an offset and a size limit', async () => {
    const image = await makeImage('gpt.img', 24 * MiB);
    run('sfdisk', ['-q', image], 'label: gpt\nstart=2048, size=16384, type=L\n');
    const partition = attachLoop(image, '-o', String(MiB), '--sizelimit', String(8 * MiB));
    run('mkfs.ext4', ['-q', '-F', partition]);

    const source = await openVolume(partition);
    expect(source.layout).toMatchObject({ kind: 'block-device', size: 8 * MiB, filesystem: 'ext4', partitionTable: { type: 'none' } });
    const first = Buffer.alloc(4096);
    await source.read(first, 0, first.length);
    const fromImage = Buffer.alloc(4096);
    (await readFile(image)).copy(fromImage, 0, MiB, MiB + 4096);
    expect(first.equals(fromImage)).toBe(true);

    expect((await openVolume(image)).layout.partitionTable.type).toBe('gpt');
  });

  it('finds a GPT written for 4096-byte sectors in an image file', async () => {
    const image = await makeImage('gpt4k.img', 24 * MiB);
    const device = attachLoop(image, '--sector-size', '4096');
    run('sfdisk', ['-q', device], 'label: gpt\nstart=256, size=2048, type=L\n');

    const source = await openVolume(image);
    expect(source.layout.partitionTable.type).toBe('gpt');
    expect(source.layout.sectorSize).toBe(4096);
  });
});

describe('mounted volumes', () => {
  const advice = 'the image may be inconsistent (unmount it, mount it read-only, or freeze it with fsfreeze)';

  it('warns when the block device is mounted read-write, naming the mount point', async () => {
    const image = await makeImage('ext4.img', 16 * MiB);
    run('mkfs.ext4', ['-q', '-F', image]);
    const device = attachLoop(image);
    const mountPoint = await mountAt(device, 'mount point with spaces');

    const source = await openVolume(device);
    expect(source.warnings).toEqual([`${device} is mounted read-write at ${mountPoint}: ${advice}`]);
  });

  it('warns when an image file backs a loop device that is mounted read-write', async () => {
    const image = await makeImage('ext4.img', 16 * MiB);
    run('mkfs.ext4', ['-q', '-F', image]);
    const device = attachLoop(image);
    const mountPoint = await mountAt(device, 'mnt');

    const source = await openVolume(image);
    expect(source.warnings).toEqual([`${image} is attached to ${device}; ${device} is mounted read-write at ${mountPoint}: ${advice}`]);
  });

  it('does not warn about a read-only mount', async () => {
    const image = await makeImage('ext4.img', 16 * MiB);
    run('mkfs.ext4', ['-q', '-F', image]);
    const device = attachLoop(image);
    await mountAt(device, 'mnt', '-o', 'ro');

    expect((await openVolume(device)).warnings).toEqual([]);
    expect((await openVolume(image)).warnings).toEqual([]);
  });
});
