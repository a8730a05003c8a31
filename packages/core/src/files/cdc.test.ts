import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { newMasterKey } from '../crypto/crypto.js';
import { DEFAULT_CDC, type RepositoryConfig } from '../repository/config.js';
import { chunkerInUse, FastCdc, gearTable, useNativeChunker } from './cdc.js';
import { pseudoRandomBytes } from '../testing/pseudo-random.js';

const MiB = 1024 * 1024;
const config = { version: 5, blobId: 'blake3-keyed' } as RepositoryConfig;


// The JavaScript loop first: once the native one is loaded, the thread keeps it.
describe.each([
  ['in JavaScript', 'javascript'],
  ['with @cairn/posix', 'native'],
] as const)('FastCDC %s', (_, loop) => {
  beforeAll(async () => {
    if (loop === 'native') await useNativeChunker();
    expect(chunkerInUse()).toBe(loop);
  });
  const key = newMasterKey();
  const cdc = new FastCdc(gearTable(config, key), DEFAULT_CDC);
  const data = pseudoRandomBytes(64 * MiB, 7);

  it('derives the gear table from the blob-id key: another key, another table', () => {
    expect(gearTable(config, key)).toEqual(gearTable(config, key));
    expect(gearTable(config, newMasterKey())).not.toEqual(gearTable(config, key));
  });

  it('cuts deterministically, every chunk but the last within [min, max], about avg on average', () => {
    const lengths = cdc.lengths(data);
    expect(cdc.lengths(data)).toEqual(lengths);
    expect(lengths.reduce((a, b) => a + b, 0)).toBe(data.length);
    for (const length of lengths.slice(0, -1)) {
      expect(length).toBeGreaterThanOrEqual(DEFAULT_CDC.min);
      expect(length).toBeLessThanOrEqual(DEFAULT_CDC.max);
    }
    const mean = data.length / lengths.length;
    expect(mean).toBeGreaterThan(0.7 * DEFAULT_CDC.avg);
    expect(mean).toBeLessThan(1.6 * DEFAULT_CDC.avg);
  });

  it('cuts zeros (no boundary in them) at max', () => {
    expect(cdc.lengths(Buffer.alloc(20 * MiB))).toEqual([8 * MiB, 8 * MiB, 4 * MiB]);
  });

  it('cuts the same with data given max bytes at a time as with all of it', () => {
    const whole = cdc.lengths(data.subarray(0, 24 * MiB));
    const streamed: number[] = [];
    let at = 0;
    while (at < 24 * MiB) {
      const end = Math.min(24 * MiB, at + DEFAULT_CDC.max);
      const length = cdc.cut(data, at, end, end === 24 * MiB);
      streamed.push(length);
      at += length;
    }
    expect(streamed).toEqual(whole);
  });

  it.each([false, true])('boundary: the same chunks with data arriving in uneven pieces, undefined until the data decides (resuming: %s)', (resuming) => {
    const total = 24 * MiB;
    // Zeros in the middle: no boundary there, so chunks of max bytes are cut from them too.
    const mixed = Buffer.concat([data.subarray(0, 10 * MiB), Buffer.alloc(9 * MiB), data.subarray(19 * MiB, total)]);
    const whole = cdc.lengths(mixed);
    // Pieces of 1 and 31 bytes resume within the 32 bytes fed again.
    const pieces = [1, 300 * 1024, 31, 3 * MiB, 700 * 1024, 1, 5 * MiB, 64 * 1024];
    const cut: number[] = [];
    let chunkStart = 0;
    let available = 0;
    let scanned = 0;
    for (let piece = 0; ; piece++) {
      const final = available === total;
      const length = cdc.boundary(mixed, chunkStart, available, final, resuming ? scanned : chunkStart);
      if (length === 0) break;
      if (length === undefined) {
        expect(final).toBe(false);
        scanned = available;
        available = Math.min(total, available + pieces[piece % pieces.length]!);
        continue;
      }
      expect(chunkStart + length).toBeLessThanOrEqual(available);
      cut.push(length);
      chunkStart += length;
      scanned = chunkStart;
    }
    expect(cut).toEqual(whole);
    // Resuming just before a boundary still finds it: h there needs the bytes before the resume.
    for (const [start, length] of chunkStarts(whole.slice(0, 6)))
      for (const back of [1, 2, 16, 31, 32]) expect(cdc.boundary(mixed, start, start + length + 100, false, start + length - back)).toBe(length);
    expect(cdc.boundary(mixed, 0, DEFAULT_CDC.min, false)).toBeUndefined();
    expect(cdc.boundary(Buffer.alloc(8 * MiB), 0, 8 * MiB, false)).toBe(8 * MiB);
  });

  it('changes only the first chunk or two when bytes are inserted at the start of 64 MiB', () => {
    const before = cdc.lengths(data);
    const after = cdc.lengths(Buffer.concat([randomBytes(100), data]));
    const offsets = (lengths: number[], shift: number) => {
      const ends = new Set<number>();
      let at = shift;
      for (const length of lengths) ends.add((at += length));
      return ends;
    };
    const oldEnds = offsets(before, 100);
    const newEnds = [...offsets(after, 0)];
    const moved = newEnds.filter((end) => !oldEnds.has(end));
    expect(moved.length).toBeLessThanOrEqual(2);
    expect(after.length - before.length).toBeLessThanOrEqual(2);
  });

  it('refuses to cut short data that is not final', () => {
    expect(() => cdc.cut(data, 0, DEFAULT_CDC.max - 1, false)).toThrow(/needs/);
  });

  it('runs at a useful speed (printed)', () => {
    const started = performance.now();
    const lengths = cdc.lengths(data);
    const seconds = (performance.now() - started) / 1000;
    console.log(`FastCDC (${loop}): ${(data.length / 1e6 / seconds).toFixed(0)} MB/s over 64 MiB of random data (${lengths.length} chunks)`);
    expect(lengths.length).toBeGreaterThan(10);
  });
});

/** Each chunk's start and length, from the lengths in order. */
function chunkStarts(lengths: number[]): Array<[number, number]> {
  let at = 0;
  return lengths.map((length) => [(at += length) - length, length]);
}
