import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  BlobType,
  ChunkKind,
  decodeChunkMap,
  decodeIndex,
  decodePackHeader,
  encodeChunkMap,
  encodeIndex,
  encodePackHeader,
  type PackedBlob,
} from './format.js';

function blobs(lengths: number[]): PackedBlob[] {
  let offset = 0;
  return lengths.map((length, i) => {
    const blob = { type: i % 2 ? BlobType.chunkMap : BlobType.chunk, id: randomBytes(32), offset, length, rawLength: length * 3 } as PackedBlob;
    offset += length;
    return blob;
  });
}

describe('repository format v1', () => {
  it('round-trips a pack header, offsets following from lengths', () => {
    const entries = blobs([100, 2000, 7]);
    expect(decodePackHeader(encodePackHeader(entries))).toEqual(entries);
  });

  it('rejects a pack header with the wrong magic or length', () => {
    const header = encodePackHeader(blobs([1, 2]));
    expect(() => decodePackHeader(header.subarray(0, header.length - 1))).toThrow(/wrong length/);
    const wrongMagic = Buffer.from(header);
    wrongMagic[0] = 0x41;
    expect(() => decodePackHeader(wrongMagic)).toThrow(/not a pack header/);
  });

  it('round-trips an index of several packs', () => {
    const packs = [
      { id: randomBytes(32), blobs: blobs([10, 20]) },
      { id: randomBytes(32), blobs: blobs([5]) },
    ];
    expect(decodeIndex(encodeIndex(packs))).toEqual(packs);
  });

  it('rejects a truncated index or one with trailing bytes', () => {
    const bytes = encodeIndex([{ id: randomBytes(32), blobs: blobs([10, 20]) }]);
    expect(() => decodeIndex(bytes.subarray(0, bytes.length - 3))).toThrow(/truncated/);
    expect(() => decodeIndex(Buffer.concat([bytes, Buffer.alloc(1)]))).toThrow(/trailing/);
  });

  it('round-trips a chunk map with every record kind', () => {
    const records = [
      { kind: ChunkKind.data, id: randomBytes(32) },
      { kind: ChunkKind.zero },
      { kind: ChunkKind.unused },
      { kind: ChunkKind.data, id: randomBytes(32) },
    ];
    const encoded = encodeChunkMap(records);
    expect(encoded.length).toBe(2 * 33 + 2);
    expect(decodeChunkMap(encoded)).toEqual(records);
  });

  it('rejects an unknown chunk kind and a truncated id', () => {
    expect(() => decodeChunkMap(Buffer.from([9]))).toThrow(/unknown record kind/);
    expect(() => decodeChunkMap(Buffer.from([ChunkKind.data, 1, 2]))).toThrow(/truncated/);
  });
});
