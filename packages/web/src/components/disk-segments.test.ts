import { describe, expect, test } from 'vitest';
import type { VolumeLayout } from '../types';
import { segments, usedFraction } from './disk-segments';

const MiB = 1024 * 1024;

function gpt(partitions: VolumeLayout['partitions'], size = 100 * MiB): VolumeLayout {
  return { size, sectorSize: 512, kind: 'file', partitionTable: { type: 'gpt' }, mode: 'used', partitions };
}

describe('segments of a drawn disk', () => {
  test('partitions in disk order with the unallocated space before, between and after them', () => {
    const layout = gpt([
      { index: 2, offset: 40 * MiB, size: 50 * MiB, filesystem: 'ext4', mode: 'used', usedBytes: 10 * MiB },
      { index: 1, offset: 1 * MiB, size: 30 * MiB, filesystem: 'vfat', mode: 'exact', note: 'imaged exactly' },
    ]);
    expect(segments(layout).map((s) => [s.key, s.offset, s.size])).toEqual([
      ['gap-0', 0, 1 * MiB],
      ['p1', 1 * MiB, 30 * MiB],
      [`gap-${31 * MiB}`, 31 * MiB, 9 * MiB],
      ['p2', 40 * MiB, 50 * MiB],
      [`gap-${90 * MiB}`, 90 * MiB, 10 * MiB],
    ]);
  });

  test('a gap smaller than half a percent of the disk is not drawn', () => {
    const layout = gpt([{ index: 1, offset: 34 * 512, size: 100 * MiB - 34 * 512 - 33 * 512, mode: 'used', usedBytes: 0 }]);
    expect(segments(layout).map((s) => s.key)).toEqual(['p1']);
  });

  test('used fraction: used bytes of the size; an exact partition or an unknown use is full; a gap is empty', () => {
    const [gap, p1, p2] = segments(
      gpt([
        { index: 1, offset: 10 * MiB, size: 40 * MiB, mode: 'used', usedBytes: 10 * MiB },
        { index: 2, offset: 50 * MiB, size: 50 * MiB, mode: 'exact' },
      ]),
    );
    expect(usedFraction(gap!)).toBe(0);
    expect(usedFraction(p1!)).toBe(0.25);
    expect(usedFraction(p2!)).toBe(1);
  });

  test('a volume without a partition table is one box, used as far as the backup read it', () => {
    const layout: VolumeLayout = { size: 64 * MiB, sectorSize: 512, kind: 'file', partitionTable: { type: 'none' }, filesystem: 'ext4', mode: 'used', partitions: [] };
    const [whole] = segments(layout, 16 * MiB);
    expect(whole).toMatchObject({ key: 'whole', filesystem: 'ext4', size: 64 * MiB, used: 16 * MiB });
    expect(usedFraction(whole!)).toBe(0.25);
    expect(segments({ ...layout, mode: 'exact' }, 16 * MiB)[0]!.used).toBeUndefined();
  });
});
