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

  it('covers a window of chunks [first, end)', () => {
    const digests = new ChunkDigests(5, 7);
    digests.set(6, blake3(chunks[1]!));
    digests.set(5, blake3(chunks[0]!));
    expect(digests.hex()).toBe(blake3(Buffer.from(chunks.slice(0, 2).map((c) => blake3(c).toString('hex') + '\n').join(''))).toString('hex'));
  });
});
