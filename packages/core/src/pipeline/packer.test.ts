import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MemoryTarget } from '../testing/index.js';
import { Repository, type BlobIndex } from '../repository/repository.js';
import { BlobType, Keys, decodePackHeader, type PackedBlob } from '../repository/format.js';
import { open as openSealed, packIdOf } from '../crypto/crypto.js';
import type { ObjectWriter } from '../target.js';
import { Packer } from './packer.js';

const MiB = 1024 * 1024;

/** A MemoryTarget that also takes objects piece by piece (as a local target does), counting the bytes it holds in writers not yet committed. */
class StreamingMemoryTarget extends MemoryTarget {
  uncommittedBytes = 0;
  aborted = 0;

  async openWriter(): Promise<ObjectWriter> {
    const pieces: Buffer[] = [];
    const drop = () => {
      this.uncommittedBytes -= pieces.reduce((sum, piece) => sum + piece.length, 0);
      pieces.length = 0;
    };
    return {
      write: async (data) => {
        pieces.push(Buffer.from(data));
        this.uncommittedBytes += data.length;
      },
      commit: async (key) => {
        await this.put(key, Buffer.concat(pieces));
        drop();
      },
      abort: async () => {
        this.aborted++;
        drop();
      },
    };
  }
}

const targetKinds = [
  ['whole packs', () => new MemoryTarget()],
  ['streamed packs', () => new StreamingMemoryTarget()],
] as const;

/** Stores `blobs` through a Packer and checks every pack and blob against what was added. */
async function packAndVerify(blobs: Buffer[], chunkSize = MiB, target = new MemoryTarget()): Promise<{ packs: number; index: BlobIndex; ids: Buffer[]; headers: Map<string, PackedBlob[]> }> {
  const repository = await Repository.init(target, 'pw', { chunkSize });
  const packer = new Packer(repository);
  const ids = blobs.map(() => randomBytes(32));
  for (const [i, blob] of blobs.entries()) await packer.add(BlobType.chunk, ids[i]!, blob, blob.length + 100);
  await packer.flush();

  const index = await repository.loadIndex();
  expect(index.blobCount).toBe(blobs.length);
  const packBytes = new Map<string, Buffer>();
  const headers = new Map<string, PackedBlob[]>();
  for (const packId of index.packIds) {
    const pack = await target.get(Keys.pack(packId));
    packBytes.set(packId, pack);
    expect(packIdOf('blake3', pack).toString('hex'), 'pack named by its hash').toBe(packId);
    const headerLength = pack.readUInt32LE(pack.length - 4);
    const header = decodePackHeader(openSealed(repository.masterKey.encryption, pack.subarray(pack.length - 4 - headerLength, pack.length - 4)));
    expect(header.at(-1)!.offset + header.at(-1)!.length, 'the header follows the last blob').toBe(pack.length - 4 - headerLength);
    headers.set(packId, header);
  }
  for (const [i, blob] of blobs.entries()) {
    const location = index.get(ids[i]!.toString('hex'))!;
    const pack = packBytes.get(location.pack)!;
    expect(pack.subarray(location.offset, location.offset + location.length).equals(blob), `blob ${i}`).toBe(true);
    expect(location.rawLength).toBe(blob.length + 100);
  }
  return { packs: index.packIds.length, index, ids, headers };
}

async function listKeys(target: MemoryTarget, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of target.list(prefix)) keys.push(object.key);
  return keys;
}

/** The ids of the blobs in each pack, as its header lists them, packs in the order of their first blob. */
function blobsPerPack(ids: Buffer[], index: BlobIndex, headers: Map<string, PackedBlob[]>): number[][] {
  const packOrder = [...new Set(ids.map((id) => index.get(id.toString('hex'))!.pack))];
  const position = new Map(ids.map((id, i) => [id.toString('hex'), i]));
  return packOrder.map((pack) => headers.get(pack)!.map((blob) => position.get(blob.id.toString('hex'))!));
}

describe('Packer', () => {
  it.each(targetKinds)('fills packs to the pack size and reuses their memory without mixing up their bytes (%s)', async (_, makeTarget) => {
    // 80 MiB of blobs: more packs than uploads in flight, so pack buffers are used again.
    const blobs = Array.from({ length: 80 }, (_, i) => randomBytes(MiB - 1000 * (i % 7)));
    const { packs } = await packAndVerify(blobs, MiB, makeTarget());
    expect(packs).toBeGreaterThanOrEqual(5);
    expect(packs).toBeLessThanOrEqual(6);
  });

  it.each(targetKinds.flatMap(([kind, makeTarget]) => [1, 3].map((uploads) => [uploads, kind, makeTarget] as const)))(
    'with %i upload(s) in flight, fills at most one more pack while they hang (%s)',
    async (uploads, _, makeTarget) => {
      // Streamed, a pack's put is its commit: the pack being filled is all a backup holds beyond.
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      let packsPut = 0;
      const target = makeTarget();
      const put = target.put.bind(target);
      target.put = async (key: string, data: Uint8Array): Promise<void> => {
        if (key.startsWith('data/')) {
          packsPut++;
          await released;
        }
        return put(key, data);
      };
      const repository = await Repository.init(target, 'pw', { chunkSize: MiB });
      const packer = new Packer(repository, uploads);
      const blobsPerPack = Math.floor((16 * MiB) / (MiB - 100));
      let accepted = 0;
      const adds = Array.from({ length: 6 * blobsPerPack }, () => packer.add(BlobType.chunk, randomBytes(32), randomBytes(MiB - 100), MiB).then(() => accepted++));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(packsPut).toBe(uploads);
      expect(accepted).toBeLessThanOrEqual((uploads + 1) * blobsPerPack);
      release();
      await Promise.all(adds);
      await packer.flush();
      expect((await repository.loadIndex()).blobCount).toBe(6 * blobsPerPack);
    },
  );

  it('takes no new pack buffer while a full pack waits for an upload slot, however many blobs are added at once', async () => {
    // Uploads hang until released: three are in flight, the fourth full pack waits for a slot,
    // and every blob beyond it must wait too instead of filling a fifth, sixth… buffer.
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    class SlowTarget extends MemoryTarget {
      override async put(key: string, data: Uint8Array): Promise<void> {
        if (key.startsWith('data/')) await released;
        return super.put(key, data);
      }
    }
    const repository = await Repository.init(new SlowTarget(), 'pw', { chunkSize: MiB });
    const packer = new Packer(repository);
    const blobsPerPack = Math.floor((16 * MiB) / (MiB - 100)); // a pack holds the whole blobs that fit in 16 MiB
    let accepted = 0;
    const adds = Array.from({ length: 8 * blobsPerPack }, () => packer.add(BlobType.chunk, randomBytes(32), randomBytes(MiB - 100), MiB).then(() => accepted++));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(accepted).toBeLessThanOrEqual(4 * blobsPerPack);
    release();
    await Promise.all(adds);
    await packer.flush();
    expect((await repository.loadIndex()).blobCount).toBe(8 * blobsPerPack);
  });

  it.each(targetKinds)('closes a pack before a blob that would take it past the pack size, and when a blob fills it exactly (%s)', async (_, makeTarget) => {
    // 16 MiB - 1 bytes leave the pack one byte short of the pack size: a whole sealed 1 MiB
    // chunk (codec byte, nonce and tag: 29 bytes more) starts the next pack.
    const short = await packAndVerify([randomBytes(16 * MiB - 1), randomBytes(MiB + 29), randomBytes(MiB + 29), randomBytes(10)], MiB, makeTarget());
    expect(blobsPerPack(short.ids, short.index, short.headers)).toEqual([[0], [1, 2, 3]]);
    const exact = await packAndVerify([randomBytes(16 * MiB - 10), randomBytes(10), randomBytes(5)], MiB, makeTarget());
    expect(blobsPerPack(exact.ids, exact.index, exact.headers)).toEqual([[0, 1], [2]]);
    expect(Math.max(...exact.index.packIds.map((id) => exact.index.packDataEnd(id)!))).toBe(16 * MiB);
  });

  it('closes a pack early rather than overflow its header room with many small blobs', async () => {
    // A pack buffer has header room for 256 blobs past the pack size; 4,200 blobs of 4,000
    // bytes fill a 16 MiB pack, and their header entries (41 bytes each) take 172 KB.
    const blobs = Array.from({ length: 5000 }, () => randomBytes(4000));
    const { index } = await packAndVerify(blobs, 64 * 1024);
    const packEnds = index.packIds.map((id) => index.packDataEnd(id)!);
    expect(Math.max(...packEnds)).toBeLessThan(16 * 1024 * 1024);
  });

  it.each(targetKinds)('gives a blob larger than any chunk a pack of its own (%s)', async (_, makeTarget) => {
    const blobs = [randomBytes(1000), randomBytes(20 * MiB), randomBytes(1000)];
    const { ids, index, headers } = await packAndVerify(blobs, MiB, makeTarget());
    // The open pack is closed before the large blob, which fills a pack by itself.
    expect(blobsPerPack(ids, index, headers)).toEqual([[0], [1], [2]]);
    const own = index.get(ids[1]!.toString('hex'))!;
    expect(own.offset).toBe(0);
    expect(index.packDataEnd(own.pack)).toBe(20 * MiB);
  });

  it('streamed: packs many small blobs added at once in the order they were placed, each pack named by its bytes', async () => {
    const target = new StreamingMemoryTarget();
    const repository = await Repository.init(target, 'pw', { chunkSize: 64 * 1024 });
    const packer = new Packer(repository);
    // Sizes that straddle the 1 MiB staging buffers at every offset; all added without waiting.
    const blobs = Array.from({ length: 3000 }, (_, i) => randomBytes(1 + ((i * 7919) % 20000)));
    const ids = blobs.map(() => randomBytes(32));
    await Promise.all(blobs.map((blob, i) => packer.add(BlobType.chunk, ids[i]!, blob, blob.length)));
    await packer.flush();
    const index = await repository.loadIndex();
    const packs = new Map<string, Buffer>();
    for (const id of index.packIds) {
      packs.set(id, await target.get(Keys.pack(id)));
      expect(packIdOf('blake3', packs.get(id)!).toString('hex')).toBe(id);
    }
    expect(packs.size).toBeGreaterThanOrEqual(2);
    for (const [i, blob] of blobs.entries()) {
      const location = index.get(ids[i]!.toString('hex'))!;
      const pack = packs.get(location.pack)!;
      expect(pack.subarray(location.offset, location.offset + location.length).equals(blob), `blob ${i}`).toBe(true);
    }
    expect(target.uncommittedBytes).toBe(0);
  });

  it('streamed: a pack that cannot be written fails the run and leaves neither the pack nor an index naming it', async () => {
    class FailingWrites extends StreamingMemoryTarget {
      override async openWriter(): Promise<ObjectWriter> {
        const writer = await super.openWriter();
        let written = 0;
        return {
          ...writer,
          write: async (data) => {
            if ((written += data.length) > 3 * MiB) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
            return writer.write(data);
          },
        };
      }
    }
    const target = new FailingWrites();
    const repository = await Repository.init(target, 'pw', { chunkSize: MiB });
    const packer = new Packer(repository);
    const adding = (async () => {
      for (let i = 0; i < 40; i++) await packer.add(BlobType.chunk, randomBytes(32), randomBytes(MiB - 100), MiB);
      await packer.flush();
    })();
    await expect(adding).rejects.toThrow('no space left on device');
    await packer.abandon();
    expect(await listKeys(target, 'data/')).toEqual([]);
    expect(await listKeys(target, 'index/')).toEqual([]);
    expect(target.aborted).toBeGreaterThanOrEqual(1);
    expect(target.uncommittedBytes).toBe(0);
  });
});
