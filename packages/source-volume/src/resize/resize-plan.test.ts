import { describe, expect, it } from 'vitest';
import { TargetTooSmallError, UsageError, type PartitionLayout, type ResizeRequest, type VolumeLayout } from '@cairn/core';
import { checkShrinkFits, fittingSize, growSubject, requiredSize, shrinkLayout, shrunkPlaces } from './resize-plan.js';

const MiB = 1024 * 1024;

function partition(index: number, offsetMiB: number, sizeMiB: number, filesystem: string, usedMiB?: number): PartitionLayout {
  return { index, offset: offsetMiB * MiB, size: sizeMiB * MiB, filesystem, mode: 'used', ...(usedMiB !== undefined && { usedBytes: usedMiB * MiB }) };
}

function request(mode: 'grow' | 'shrink', partitions: PartitionLayout[], options: { size?: number; partition?: number; table?: 'gpt' | 'mbr' | 'none'; filesystem?: string; diskMiB?: number } = {}): ResizeRequest {
  const layout: VolumeLayout = {
    size: (options.diskMiB ?? 256) * MiB,
    sectorSize: 512,
    kind: 'file',
    partitionTable: { type: options.table ?? 'gpt' },
    mode: 'used',
    partitions,
    ...(options.filesystem && { filesystem: options.filesystem }),
  };
  return { mode, image: '/dev/target', manifest: { size: layout.size, layout, source: { type: 'volume', path: 'disk.img' } }, ...(options.size !== undefined && { size: options.size }), ...(options.partition !== undefined && { partition: options.partition }) };
}

const espAndRoot = [partition(1, 1, 32, 'fat32', 1), partition(2, 33, 200, 'ext4', 20)];

describe('growSubject', () => {
  it('is the last partition, or the one named if it is the last', () => {
    expect(growSubject(request('grow', espAndRoot))).toMatchObject({ partition: 2, filesystem: 'ext4', offset: 33 * MiB });
    expect(growSubject(request('grow', espAndRoot, { partition: 2 }))).toMatchObject({ partition: 2 });
  });

  it('refuses a partition another one follows, one that does not exist, and FAT', () => {
    expect(() => growSubject(request('grow', espAndRoot, { partition: 1 }))).toThrow(/partition 2 follows it/);
    expect(() => growSubject(request('grow', espAndRoot, { partition: 7 }))).toThrow(/no partition 7 \(it has 1, 2\)/);
    expect(() => growSubject(request('grow', [partition(1, 1, 32, 'fat32')]))).toThrow(/no tool here that grows FAT/);
    expect(() => growSubject(request('grow', [partition(5, 1, 32, 'ext4')], { table: 'mbr' }))).toThrow(/logical MBR partitions/);
  });

  it('grows a bare filesystem as a whole', () => {
    expect(growSubject(request('grow', [], { table: 'none', filesystem: 'xfs' }))).toEqual({ filesystem: 'xfs', offset: 0, size: 256 * MiB });
    expect(() => growSubject(request('grow', [], { table: 'none' }))).toThrow(UsageError);
  });
});

describe('shrinkLayout', () => {
  it('picks the shrinkable partition with the most free space, and moves what follows it', () => {
    const parts = [partition(1, 1, 160, 'ntfs', 10), partition(2, 161, 48, 'ext4', 40), partition(3, 209, 20, 'swap')];
    const plan = shrinkLayout(request('shrink', parts, { size: 153 * MiB }));
    expect(plan.subject.partition).toBe(1);
    expect(plan.after.map((p) => p.index)).toEqual([2, 3]);
    // 153 MiB less the backup GPT's MiB, 48 + 20 MiB after it, and the MiB before it.
    expect(fittingSize(plan, 153 * MiB)).toBe(83 * MiB);
    expect(shrunkPlaces(plan, 83 * MiB)).toEqual([
      { index: 1, offset: MiB, size: 83 * MiB, oldOffset: MiB },
      { index: 2, offset: 84 * MiB, size: 48 * MiB, oldOffset: 161 * MiB },
      { index: 3, offset: 132 * MiB, size: 20 * MiB, oldOffset: 209 * MiB },
    ]);
    expect(requiredSize(plan, 83 * MiB)).toBe(153 * MiB);
  });

  it('refuses XFS (it cannot shrink) with the size the layout needs as it is', () => {
    const parts = [partition(1, 1, 300, 'xfs', 5)];
    const thrown = (() => {
      try {
        shrinkLayout(request('shrink', parts, { size: 200 * MiB, diskMiB: 320 }));
      } catch (err) {
        return err;
      }
    })();
    expect(thrown).toBeInstanceOf(TargetTooSmallError);
    expect((thrown as TargetTooSmallError).minimumSize).toBe(302 * MiB);
    expect((thrown as Error).message).toMatch(/XFS cannot shrink.*needs at least 316669952 bytes \(302 MiB\)/);
  });

  it('refuses before restoring a target smaller than the used data', () => {
    const plan = shrinkLayout(request('shrink', espAndRoot, { size: 40 * MiB }));
    expect(() => checkShrinkFits(plan, request('shrink', espAndRoot, { size: 40 * MiB }))).toThrow(/needs at least 56623104 bytes \(54 MiB/);
    expect(() => checkShrinkFits(plan, request('shrink', espAndRoot, { size: 60 * MiB }))).not.toThrow();
  });

  it('shrinks a bare filesystem to a 4 KiB multiple of the target', () => {
    const plan = shrinkLayout(request('shrink', [], { table: 'none', filesystem: 'ext4', size: 100 * MiB + 1000 }));
    expect(plan.subject).toEqual({ filesystem: 'ext4', offset: 0, size: 256 * MiB });
    expect(fittingSize(plan, 100 * MiB + 1000)).toBe(100 * MiB);
  });
});
