import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { BlobIndex, type BlobLocation } from './blob-index.js';
import { BlobType, decodeIndex, encodeIndex, type IndexedPack } from './format.js';

function pack(id: Buffer, blobs: { id: Buffer; type?: BlobType; offset: number; length: number; rawLength?: number }[]): IndexedPack {
  return { id, blobs: blobs.map((b) => ({ type: b.type ?? BlobType.chunk, id: b.id, offset: b.offset, length: b.length, rawLength: b.rawLength ?? b.length + 7 })) };
}

/** `count` packs of `perPack` blobs with ids from `idOf`, and what a Map would say of them. */
function packsOf(count: number, perPack: number, idOf: (n: number) => Buffer) {
  const packs: IndexedPack[] = [];
  const expected = new Map<string, BlobLocation>();
  for (let p = 0; p < count; p++) {
    const packId = createHash('sha256').update(`pack ${p}`).digest();
    const blobs = Array.from({ length: perPack }, (_, b) => ({ id: idOf(p * perPack + b), type: (b % 3) as BlobType, offset: b * 1000, length: 900 + b, rawLength: 4_000_000 + p }));
    packs.push(pack(packId, blobs));
    for (const blob of blobs) expected.set(blob.id.toString('hex'), { pack: packId.toString('hex'), type: blob.type, offset: blob.offset, length: blob.length, rawLength: blob.rawLength });
  }
  return { packs, expected };
}

describe('BlobIndex', () => {
  test('finds every blob of 30,000 (past several growths) where its index put it, in the order added', () => {
    const { packs, expected } = packsOf(300, 100, () => randomBytes(32));
    const index = new BlobIndex();
    index.addPacks(packs.slice(0, 120));
    index.addPacks(packs.slice(120));
    expect(index.blobCount).toBe(30_000);
    for (const [id, location] of expected) expect(index.get(id)).toEqual(location);
    expect([...index.entries()]).toEqual([...expected.entries()]);
    expect(index.packIds).toEqual(packs.map((p) => p.id.toString('hex')));
    expect(index.packDataEnd(packs[5]!.id.toString('hex'))).toBe(99 * 1000 + 999);
  });

  test('ids that differ only in their last bytes are told apart and found quickly', () => {
    const idOf = (n: number) => {
      const id = Buffer.alloc(32, 0xab);
      id.writeUInt32BE(n, 28);
      return id;
    };
    const { packs, expected } = packsOf(50, 400, idOf);
    const index = new BlobIndex();
    index.addPacks(packs);
    for (const [id, location] of expected) expect(index.get(id)).toEqual(location);
    expect(index.has(idOf(20_000).toString('hex'))).toBe(false);
  });

  test('unknown and malformed ids are not found', () => {
    const { packs, expected } = packsOf(2, 10, () => randomBytes(32));
    const index = new BlobIndex();
    index.addPacks(packs);
    const known = [...expected.keys()][3]!;
    expect(index.has(known)).toBe(true);
    expect(index.has(randomBytes(32).toString('hex'))).toBe(false);
    expect(index.has(known.slice(0, 62))).toBe(false);
    expect(index.has(`${known.slice(0, 62)}zz`)).toBe(false);
    expect(index.has(`${known}00`)).toBe(false);
    expect(index.get('')).toBeUndefined();
    expect(index.packDataEnd(randomBytes(32).toString('hex'))).toBeUndefined();
  });

  test('a blob in two packs stays where it was first seen, unless that pack is marked for deletion', () => {
    const id = randomBytes(32);
    const [first, second, third] = [randomBytes(32), randomBytes(32), randomBytes(32)];
    const marked = new Set([first.toString('hex')]);
    const reader = new BlobIndex(marked, 'read');
    reader.addPacks([pack(first, [{ id, offset: 0, length: 10 }])]);
    expect(reader.get(id.toString('hex'))?.pack).toBe(first.toString('hex'));
    reader.addPacks([pack(second, [{ id, offset: 50, length: 11 }]), pack(third, [{ id, offset: 90, length: 12 }])]);
    expect(reader.get(id.toString('hex'))).toMatchObject({ pack: second.toString('hex'), offset: 50, length: 11 });
    expect(reader.blobCount).toBe(1);
    expect(reader.packIds).toHaveLength(3);

    const writer = new BlobIndex(marked, 'write');
    writer.addPacks([pack(first, [{ id, offset: 0, length: 10 }])]);
    expect(writer.has(id.toString('hex'))).toBe(false);
    expect(writer.packDataEnd(first.toString('hex'))).toBeUndefined();
  });

  test('addIndex of an index file\'s bytes gives what addPacks of its decoded packs gives, marked packs and duplicates included', () => {
    const { packs } = packsOf(40, 250, () => randomBytes(32));
    // Blobs stored twice: in a marked pack first, then in another; and within one index file.
    packs.push(pack(randomBytes(32), packs[3]!.blobs.slice(0, 20)), pack(randomBytes(32), packs[0]!.blobs.slice(5, 9)));
    const marked = new Set([packs[3]!.id.toString('hex'), packs[7]!.id.toString('hex')]);
    for (const purpose of ['read', 'write'] as const) {
      const decoded = new BlobIndex(marked, purpose);
      const direct = new BlobIndex(marked, purpose);
      for (const part of [packs.slice(0, 25), packs.slice(25)]) {
        decoded.addPacks(decodeIndex(encodeIndex(part)));
        direct.addIndex(encodeIndex(part));
      }
      expect([...direct.entries()], purpose).toEqual([...decoded.entries()]);
      expect(direct.packIds).toEqual(decoded.packIds);
      expect(direct.blobCount).toBe(purpose === 'read' ? 10_000 : 10_000 - 2 * 250 + 20); // a writer leaves marked packs out
      for (const id of decoded.packIds) expect(direct.packDataEnd(id)).toBe(decoded.packDataEnd(id));
    }
  });

  test('addIndex of a malformed index throws and adds nothing', () => {
    const { packs } = packsOf(3, 10, () => randomBytes(32));
    const bytes = encodeIndex(packs);
    const index = new BlobIndex();
    const unknownType = Buffer.from(bytes);
    unknownType[8 + 32 + 4 + 2 * 45 + 45 * 10 + 36] = 9; // a blob of the second pack
    for (const [bad, message] of [[bytes.subarray(0, bytes.length - 3), /truncated/], [Buffer.concat([bytes, Buffer.alloc(1)]), /trailing/], [unknownType, /unknown blob type 9/]] as const) {
      expect(() => index.addIndex(bad)).toThrow(message);
      expect(index.blobCount).toBe(0);
      expect(index.packIds).toEqual([]);
    }
  });

  test('entries() goes on through blobs added while it runs, past a growth of the columns', () => {
    const { packs, expected } = packsOf(30, 100, () => randomBytes(32));
    const index = new BlobIndex();
    index.addPacks(packs.slice(0, 10));
    const seen: string[] = [];
    for (const [id] of index.entries()) {
      if (seen.length === 500) index.addPacks(packs.slice(10));
      seen.push(id);
    }
    expect(seen).toEqual([...expected.keys()]);
  });

  test('a location handed out is a copy: changing it changes nothing in the index', () => {
    const { packs, expected } = packsOf(1, 3, () => randomBytes(32));
    const index = new BlobIndex();
    index.addPacks(packs);
    const id = [...expected.keys()][1]!;
    index.get(id)!.offset = 123_456;
    expect(index.get(id)).toEqual(expected.get(id));
  });
});
