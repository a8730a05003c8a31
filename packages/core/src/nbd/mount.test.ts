import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { MountError, UsageError } from '../errors.js';
import type { VolumeLayout } from '../source.js';
import { mountPlan, volumeParts } from './mount.js';
import { loadMountState, newMountState, saveMountState } from './mount-state.js';

const MiB = 1024 * 1024;

function gptLayout(): VolumeLayout {
  return {
    size: 64 * MiB,
    sectorSize: 512,
    kind: 'file',
    partitionTable: { type: 'gpt' },
    mode: 'used',
    partitions: [
      { index: 1, offset: MiB, size: 16 * MiB, filesystem: 'ext4', mode: 'used' },
      { index: 2, offset: 17 * MiB, size: 8 * MiB, mode: 'exact' },
    ],
  };
}

describe('volumeParts', () => {
  test('a partitioned disk: its partitions, by their own numbers', () => {
    expect(volumeParts(gptLayout())).toEqual([
      { index: 1, offset: MiB, size: 16 * MiB, filesystem: 'ext4' },
      { index: 2, offset: 17 * MiB, size: 8 * MiB },
    ]);
    expect(volumeParts(gptLayout(), 2)).toEqual([{ index: 2, offset: 17 * MiB, size: 8 * MiB }]);
  });

  test('a bare filesystem is partition 0, the whole volume', () => {
    const layout: VolumeLayout = { size: 8 * MiB, sectorSize: 512, kind: 'file', partitionTable: { type: 'none' }, filesystem: 'xfs', mode: 'used', partitions: [] };
    expect(volumeParts(layout)).toEqual([{ index: 0, offset: 0, size: 8 * MiB, filesystem: 'xfs' }]);
  });

  test('a partition the layout lacks is bad usage, naming those it has', () => {
    expect(() => volumeParts(gptLayout(), 5)).toThrow(UsageError);
    expect(() => volumeParts(gptLayout(), 5)).toThrow(/no partition 5; it has 1, 2/);
  });
});

describe('mountPlan', () => {
  test('read-only without log replay, per filesystem', () => {
    expect(mountPlan('ext4')).toEqual({ driver: 'kernel', type: 'ext4', options: 'ro,noload' });
    expect(mountPlan('xfs')).toEqual({ driver: 'kernel', type: 'xfs', options: 'ro,norecovery' });
    expect(mountPlan('btrfs')).toEqual({ driver: 'kernel', type: 'btrfs', options: 'ro,rescue=nologreplay' });
    expect(mountPlan('vfat')).toEqual({ driver: 'fat' });
    expect(mountPlan('fat32')).toEqual({ driver: 'fat' });
    expect(mountPlan('ntfs')).toEqual({ driver: 'ntfs-3g' });
  });

  test('swap, LUKS, unknown and absent filesystems are skipped with a reason', () => {
    expect(mountPlan('swap')).toEqual({ skip: expect.stringMatching(/swap/) });
    expect(mountPlan('crypto_LUKS')).toEqual({ skip: expect.stringMatching(/cryptsetup/) });
    expect(mountPlan('luks')).toEqual({ skip: expect.stringMatching(/cryptsetup/) });
    expect(mountPlan('lvm2')).toEqual({ skip: expect.stringMatching(/LVM2/) });
    expect(mountPlan('zfs_member')).toEqual({ skip: 'cairn does not mount zfs_member filesystems' });
    expect(mountPlan(undefined)).toEqual({ skip: 'no filesystem found' });
  });
});

describe('the mount record', () => {
  let dir: string;
  afterEach(() => rm(dir, { recursive: true, force: true }));

  test('round-trips, and is refused where it is missing, foreign or of another folder', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-mount-state-'));
    await expect(loadMountState(dir)).rejects.toThrow(/was not mounted by cairn mount/);
    await mkdir(join(dir, '.cairn'));
    const state = newMountState(dir, 'ab'.repeat(32));
    await saveMountState(state);
    expect(await loadMountState(dir)).toEqual(state);
    await writeFile(join(dir, '.cairn/mount.json'), 'not json');
    await expect(loadMountState(dir)).rejects.toThrow(MountError);
    await writeFile(join(dir, '.cairn/mount.json'), JSON.stringify({ ...state, version: 99 }));
    await expect(loadMountState(dir)).rejects.toThrow(/version 99/);
    await writeFile(join(dir, '.cairn/mount.json'), JSON.stringify({ ...state, dir: '/elsewhere' }));
    await expect(loadMountState(dir)).rejects.toThrow(/describes a mount at \/elsewhere/);
  });
});
