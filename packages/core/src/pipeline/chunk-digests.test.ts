import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { blake3 } from '@napi-rs/blake-hash';
import { ChunkDigests, zeroChunkDigest } from './chunk-digests.js';

describe('ChunkDigests (the blake3-chunks image digest)', () => {
  const chunks = [randomBytes(1000), Buffer.alloc(1000), randomBytes(1000), randomBytes(10)];
  const lines = chunks.map((chunk) => blake3(chunk).toString('hex') + '\n').join('');
  const expected = blake3(Buffer.from(lines)).toString('hex');

  it('is the BLAKE3 of one hex line per chunk, whatever order the chunks come in', () => {
    for (const order of [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]]) {
      const digests = new ChunkDigests(0, chunks.length);
      for (const i of order) digests.set(i, blake3(chunks[i]!));
      expect(digests.hex()).toBe(expected);
    }
  });

  it('takes a precomputed digest for a zero chunk', () => {
    for (const length of [0, 1000, 64 * 1024, 4 * 1024 * 1024 + 5]) expect(zeroChunkDigest(length)).toEqual(blake3(Buffer.alloc(length)));
    expect(zeroChunkDigest(1000)).toBe(zeroChunkDigest(1000));
  });

  it('refuses a chunk given twice, and a digest with a chunk missing', () => {
    const digests = new ChunkDigests(0, 3);
    digests.set(1, blake3(chunks[1]!));
    expect(() => digests.set(1, blake3(chunks[1]!))).toThrow(/given twice/);
    digests.set(0, blake3(chunks[0]!));
    expect(() => digests.set(0, blake3(chunks[0]!))).toThrow(/given twice/);
    expect(() => digests.hex()).toThrow(/lacks chunk 2/);
  });

  it('takes long runs of one digest given ahead of a missing chunk, and more lines than one update holds', () => {
    // As a backup of a large disk: data chunks, then unused ones (one shared digest) while the last data chunk is hashed.
    const data = Array.from({ length: 5 }, () => blake3(randomBytes(100)));
    const zero = zeroChunkDigest(4096);
    const count = 5 + 3000 + 2 + 1500;
    const digestOf = (i: number) => (i < 5 ? data[i]! : i === 3005 ? data[0]! : i === 3006 ? data[1]! : zero);
    const naive = blake3(Buffer.from(Array.from({ length: count }, (_, i) => Buffer.from(digestOf(i)).toString('hex') + '\n').join(''))).toString('hex');
    const digests = new ChunkDigests(0, count);
    for (const i of [0, 1, 2, 3]) digests.set(i, digestOf(i));
    for (let i = 5; i < count; i++) if (i !== 3006) digests.set(i, digestOf(i));
    expect(() => digests.set(2000, zero)).toThrow(/given twice/); // inside a run held early
    digests.set(4, digestOf(4));
    digests.set(3006, digestOf(3006));
    expect(digests.hex()).toBe(naive);
  });

  it('covers a window of chunks [first, end)', () => {
    const digests = new ChunkDigests(5, 7);
    digests.set(6, blake3(chunks[1]!));
    digests.set(5, blake3(chunks[0]!));
    expect(digests.hex()).toBe(blake3(Buffer.from(chunks.slice(0, 2).map((c) => blake3(c).toString('hex') + '\n').join(''))).toString('hex'));
  });
});
