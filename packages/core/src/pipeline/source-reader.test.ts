import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SourceError, SourceReadError } from '../errors.js';
import type { OpenedSource } from '../source.js';
import { RangeList, SourceReader } from './source-reader.js';

const KiB = 1024;

/**
 * An image in memory whose reads fail, as a disk fails a request, when they touch a bad
 * range; records every read asked for.
 */
function faultySource(image: Buffer, bad: Array<[number, number]>) {
  const reads: Array<[number, number]> = [];
  const source: OpenedSource = {
    path: '/dev/test',
    layout: { size: image.length, sectorSize: 512, kind: 'file', partitionTable: { type: 'none' }, mode: 'exact', partitions: [] },
    extents: [{ offset: 0, length: image.length }],
    warnings: [],
    async read(into, offset, length) {
      reads.push([offset, length]);
      if (bad.some(([o, l]) => offset < o + l && o < offset + length)) throw new SourceReadError('/dev/test', offset, length, 'EIO (input/output error)');
      into.set(image.subarray(offset, offset + length));
    },
    dispose() {},
  };
  return { source, reads };
}

describe('RangeList', () => {
  it('keeps ranges in order and merges touching and overlapping ones', () => {
    const list = new RangeList();
    list.add(8192, 4096);
    list.add(0, 4096);
    list.add(20480, 4096);
    expect(list.ranges).toEqual([{ offset: 0, length: 4096 }, { offset: 8192, length: 4096 }, { offset: 20480, length: 4096 }]);
    list.add(4096, 4096); // touches both neighbours
    expect(list.ranges).toEqual([{ offset: 0, length: 12288 }, { offset: 20480, length: 4096 }]);
    list.add(10000, 12000); // overlaps both
    expect(list.ranges).toEqual([{ offset: 0, length: 24576 }]);
    list.add(100, 0);
    expect(list.totalBytes).toBe(24576);
  });
});

describe('SourceReader', () => {
  const image = randomBytes(1024 * KiB);

  it('passes a read that succeeds through, once', async () => {
    const { source, reads } = faultySource(image, []);
    const into = Buffer.alloc(256 * KiB);
    await new SourceReader(source, false).read(into, 128 * KiB, into.length);
    expect(into.equals(image.subarray(128 * KiB, 384 * KiB))).toBe(true);
    expect(reads).toEqual([[128 * KiB, 256 * KiB]]);
  });

  it('by default narrows a failed read down and names the first unreadable 4 KiB piece', async () => {
    const { source } = faultySource(image, [[300 * KiB + 100, 10], [500 * KiB, 4 * KiB]]);
    const error = await new SourceReader(source, false).read(Buffer.alloc(512 * KiB), 256 * KiB, 512 * KiB).then(() => undefined, (err: unknown) => err);
    expect(error).toBeInstanceOf(SourceReadError);
    expect((error as Error).message).toBe(`Cannot read /dev/test at offset ${300 * KiB} (length 4096): EIO (input/output error)`);
  });

  it('in rescue mode zeros only the unreadable pieces, records them merged, and reads the rest', async () => {
    // An unaligned bad range spans two pages; two neighbouring ones merge; one sits in the last, short piece.
    const bad: Array<[number, number]> = [[300 * KiB + 4000, 200], [600 * KiB, 4 * KiB], [604 * KiB, 1], [768 * KiB + 500, 10]];
    const { source, reads } = faultySource(image, bad);
    const reader = new SourceReader(source, true);
    const into = Buffer.alloc(512 * KiB + 1000).fill(0xaa);
    await reader.read(into, 256 * KiB, 512 * KiB + 1000);
    const expected = Buffer.from(image.subarray(256 * KiB, 768 * KiB + 1000));
    const unreadable = [
      { offset: 300 * KiB, length: 8 * KiB },
      { offset: 600 * KiB, length: 8 * KiB },
      { offset: 768 * KiB, length: 1000 },
    ];
    for (const { offset, length } of unreadable) expected.fill(0, offset - 256 * KiB, offset - 256 * KiB + length);
    expect(into.equals(expected)).toBe(true);
    expect(reader.unreadable.ranges).toEqual(unreadable);
    // No piece is read twice at the same size, and no good 64 KiB piece is split.
    expect(new Set(reads.map(String)).size).toBe(reads.length);
    expect(reads.filter(([, length]) => length === 4096).length).toBe(2 * 16);
  });

  it('leaves other errors alone: a source that shrank is not an unreadable range', async () => {
    const source: OpenedSource = {
      ...faultySource(image, []).source,
      async read() {
        throw new SourceError('Cannot read /dev/test at offset 0 (length 4096): the volume ends there');
      },
    };
    await expect(new SourceReader(source, true).read(Buffer.alloc(4096), 0, 4096)).rejects.toThrow(/the volume ends there/);
  });
});
