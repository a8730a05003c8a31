import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ObjectInfo, Target } from '../target.js';
import { allocateAligned } from '../pipeline/aligned-memory.js';

export interface TargetUnderTest {
  target: Target;
  /** Runs after the target is disposed, e.g. to delete a temporary folder or bucket prefix. */
  cleanup?: () => Promise<void>;
}

const MiB = 1024 * 1024;

/**
 * The contract of `Target` (see `target.ts`) as a vitest suite. Every target runs it:
 * `describeTargetConformance('local', async () => ({ target, cleanup }))`.
 * Each test gets a fresh, empty target from `makeTarget`, disposes it and then calls `cleanup`.
 */
export interface ConformanceOptions {
  /**
   * Why the store under test cannot pass the atomic-visibility checks, when it is a test
   * stand-in that writes objects in place (s3rver does). Those two checks are then reported
   * as skipped with this reason; a production store must never set it.
   */
  nonAtomicStandIn?: string;
}

export function describeTargetConformance(name: string, makeTarget: () => Promise<TargetUnderTest>, options: ConformanceOptions = {}): void {
  const atomic = options.nonAtomicStandIn === undefined;
  const atomicCheck = (title: string) => (atomic ? title : `${title} (not checked: ${options.nonAtomicStandIn})`);
  describe(`Target conformance: ${name}`, () => {
    let target: Target;
    let cleanup: (() => Promise<void>) | undefined;

    beforeEach(async () => {
      ({ target, cleanup } = await makeTarget());
    });

    afterEach(async () => {
      try {
        await target.dispose();
      } finally {
        await cleanup?.();
      }
    });

    describe('put and get', () => {
      it.each([
        ['an empty object', 0],
        ['a 1-byte object', 1],
        ['a 3 MiB object', 3 * MiB + 17],
      ])('round-trips %s', async (_, size) => {
        const data = randomBytes(size);
        await target.put('data/aa/object', data);
        const read = await target.get('data/aa/object');
        expect(Buffer.isBuffer(read)).toBe(true);
        expectSameBytes(read, data);
      });

      it('round-trips every byte value exactly', async () => {
        const data = Buffer.alloc(4096);
        for (let i = 0; i < data.length; i++) data[i] = (i * 151 + (i >> 8)) & 0xff;
        await target.put('keys/binary', data);
        expectSameBytes(await target.get('keys/binary'), data);
      });

      it('replaces an existing object on put', async () => {
        await target.put('config', Buffer.from('the first, longer version'));
        await target.put('config', Buffer.from('second'));
        expect((await target.get('config')).toString()).toBe('second');
        expect((await target.stat('config')).size).toBe(6);
      });

      it('shows every one of 32 concurrent puts', async () => {
        const objects = new Map<string, Buffer>();
        for (let i = 0; i < 32; i++) {
          // Most share one folder that does not exist yet, so folder creation races too.
          const folder = i % 4 === 0 ? `data/${hex2(i)}` : 'data/00';
          objects.set(`${folder}/object-${i}`, randomBytes(1000 + i));
        }
        await Promise.all([...objects].map(([key, data]) => target.put(key, data)));
        expect(await listKeys(target, 'data/')).toEqual([...objects.keys()].sort());
        for (const [key, data] of objects) expectSameBytes(await target.get(key), data);
      });

      it.skipIf(!atomic)(atomicCheck('keeps one whole version when the same key is put concurrently'), async () => {
        const versions = Array.from({ length: 8 }, (_, i) => Buffer.alloc(256 * 1024 + i, i + 1));
        await Promise.all(versions.map((data) => target.put('locks/contended', data)));
        const read = await target.get('locks/contended');
        expect(versions.some((data) => data.equals(read))).toBe(true);
        expect(await listKeys(target, 'locks/')).toEqual(['locks/contended']);
      });
    });

    describe('ranged get', () => {
      const data = randomBytes(10_000);
      beforeEach(() => target.put('data/ab/ranged', data));

      it.each([
        ['the start', 0, 100],
        ['the middle', 4321, 1234],
        ['the end', 9_900, 100],
        ['the exact object', 0, 10_000],
        ['a single byte', 5_000, 1],
      ])('returns exactly %s', async (_, offset, length) => {
        const read = await target.get('data/ab/ranged', { offset, length });
        expectSameBytes(read, data.subarray(offset, offset + length));
      });

      it.each([
        ['ends past the end', 9_990, 11],
        ['starts at the end', 10_000, 1],
        ['starts past the end', 20_000, 10],
      ])('rejects a range that %s', async (_, offset, length) => {
        const error = await rejectionOf(target.get('data/ab/ranged', { offset, length }));
        expect(target.isNotFound(error)).toBe(false);
      });
    });

    describe('readInto (optional)', () => {
      const data = randomBytes(3 * MiB + 1234);
      const views = (lengths: number[], shared: boolean) =>
        lengths.map((length) => (shared ? new Uint8Array(new SharedArrayBuffer(length + 64), 32, length) : new Uint8Array(length)));

      it.for([
        ['one buffer from the start', 0, [4096], false],
        ['several buffers in order', 777, [100, 0, MiB + 5, 3, 2 * MiB], false],
        ['views of shared memory, to the object\'s last byte', 1234, [MiB, 2 * MiB], true],
      ] as const)('fills %s with the bytes `get` gives', async ([, offset, lengths, shared], context) => {
        if (!target.readInto) return context.skip();
        await target.put('data/ac/into', data);
        const into = views([...lengths], shared);
        await target.readInto('data/ac/into', offset, into);
        const length = lengths.reduce((a, b) => a + b, 0);
        expectSameBytes(Buffer.concat(into), data.subarray(offset, offset + length));
      });

      it('rejects a read past the end, and a missing key as not found', async (context) => {
        if (!target.readInto) return context.skip();
        await target.put('data/ac/into', data);
        const pastEnd = await rejectionOf(target.readInto('data/ac/into', data.length - 10, views([5, 6], false)));
        expect(target.isNotFound(pastEnd)).toBe(false);
        const missing = await rejectionOf(target.readInto('data/ac/missing', 0, views([1], false)));
        expect(target.isNotFound(missing)).toBe(true);
      });
    });

    describe('openWriter (optional)', () => {
      /** `data` written in pieces: whole MiB of page-aligned memory with other bytes after them, then a short last piece, then small unaligned ones. */
      async function writeInPieces(data: Uint8Array, key: string, end: 'commit' | 'abort'): Promise<void> {
        const writer = await target.openWriter!();
        const staging = new Uint8Array(allocateAligned(MiB));
        let at = 0;
        for (; at + MiB <= data.length - 3000; at += MiB) {
          staging.set(data.subarray(at, at + MiB));
          await writer.write(staging);
          staging.fill(0xa5);
        }
        const short = Math.min(data.length - at, 1000);
        staging.fill(0xa5);
        staging.set(data.subarray(at, at + short));
        await writer.write(staging.subarray(0, short));
        for (at += short; at < data.length; at += 999) await writer.write(Buffer.from(data.subarray(at, Math.min(at + 999, data.length))));
        await (end === 'commit' ? writer.commit(key) : writer.abort());
      }

      it('stores the pieces as one object, shown only once committed', async (context) => {
        if (!target.openWriter) return context.skip();
        const data = randomBytes(3 * MiB + 5000);
        const writer = await target.openWriter();
        await writer.write(data.subarray(0, MiB));
        expect(await listKeys(target, '')).toEqual([]);
        await writer.write(data.subarray(MiB));
        await writer.commit('data/ad/streamed');
        expectSameBytes(await target.get('data/ad/streamed'), data);
        await writeInPieces(data, 'data/ad/pieces', 'commit');
        expectSameBytes(await target.get('data/ad/pieces'), data);
        expect((await target.stat('data/ad/pieces')).size).toBe(data.length);
      });

      it('replaces an existing object, and leaves nothing behind when aborted', async (context) => {
        if (!target.openWriter) return context.skip();
        await target.put('data/ad/old', randomBytes(10));
        const data = randomBytes(MiB + 3100);
        await writeInPieces(data, 'data/ad/old', 'commit');
        expectSameBytes(await target.get('data/ad/old'), data);
        await writeInPieces(randomBytes(2 * MiB + 4000), 'data/ad/aborted', 'abort');
        expect(await listKeys(target, '')).toEqual(['data/ad/old']);
        expect(target.isNotFound(await rejectionOf(target.get('data/ad/aborted')))).toBe(true);
      });
    });

    describe('stat', () => {
      it('returns the key and the size', async () => {
        await target.put('index/sized', randomBytes(12_345));
        expect(await target.stat('index/sized')).toEqual({ key: 'index/sized', size: 12_345 });
      });
    });

    describe('missing objects', () => {
      it.each(['get', 'ranged get', 'stat', 'remove'])('%s of a missing key rejects as not found', async (operation) => {
        await target.put('data/ab/present', Buffer.from('x'));
        for (const key of ['data/ab/missing', 'data/zz/missing', 'missing']) {
          const pending =
            operation === 'get' ? target.get(key)
            : operation === 'ranged get' ? target.get(key, { offset: 0, length: 1 })
            : operation === 'stat' ? target.stat(key)
            : target.remove(key);
          const error = await rejectionOf(pending);
          expect(target.isNotFound(error), `${operation} ${key}: ${String(error)}`).toBe(true);
        }
      });

      it('does not call other errors not found', () => {
        for (const other of [new Error('boom'), new TypeError('x'), undefined, null, 'ENOENT', 42]) {
          expect(target.isNotFound(other)).toBe(false);
        }
      });

      it('lists nothing on an empty target', async () => {
        expect(await listKeys(target, '')).toEqual([]);
        expect(await listKeys(target, 'data/')).toEqual([]);
      });
    });

    describe('list', () => {
      const sizes: Record<string, number> = {
        config: 10,
        'data/ab/abcd': 3,
        'data/ab/abef': 4,
        'data/cd/cdef': 5,
        'index/x': 6,
        'snapshots/s1': 7,
      };
      beforeEach(async () => {
        await Promise.all(Object.entries(sizes).map(([key, size]) => target.put(key, randomBytes(size))));
      });

      it('yields the full key and size of every object under a prefix', async () => {
        const listed = await collect(target.list('data/'));
        expect(listed.sort(byKey)).toEqual([
          { key: 'data/ab/abcd', size: 3 },
          { key: 'data/ab/abef', size: 4 },
          { key: 'data/cd/cdef', size: 5 },
        ]);
      });

      it.each([
        ['', Object.keys(sizes)],
        ['index/', ['index/x']],
        ['data/ab/', ['data/ab/abcd', 'data/ab/abef']],
        ['data/a', ['data/ab/abcd', 'data/ab/abef']],
        ['data/ab/abc', ['data/ab/abcd']],
        ['conf', ['config']],
        ['keys/', []],
        ['data/zz/', []],
      ])('matches prefix %j', async (prefix, expected) => {
        expect(await listKeys(target, prefix)).toEqual([...expected].sort());
      });

      it('lists more than 1000 objects', async () => {
        const keys = Array.from({ length: 1100 }, (_, i) => `index/${String(i).padStart(5, '0')}`);
        await inBatches(keys, 64, (key) => target.put(key, Buffer.from(key)));
        const listed = await listKeys(target, 'index/');
        expect(listed).toHaveLength(1101);
        expect(listed).toEqual([...keys, 'index/x'].sort());
      });

      it('no longer shows a removed object', async () => {
        await target.remove('data/ab/abcd');
        expect(await listKeys(target, 'data/')).toEqual(['data/ab/abef', 'data/cd/cdef']);
        expect(target.isNotFound(await rejectionOf(target.get('data/ab/abcd')))).toBe(true);
        expect(target.isNotFound(await rejectionOf(target.stat('data/ab/abcd')))).toBe(true);
        expect((await target.get('data/ab/abef')).length).toBe(4);
      });

      it.skipIf(!atomic)(atomicCheck('never shows an object before it is complete'), async () => {
        const big = randomBytes(16 * MiB);
        let done = false;
        const writing = target.put('data/ff/big', big).finally(() => (done = true));
        const seen: ObjectInfo[] = [];
        while (!done) {
          seen.push(...(await collect(target.list('data/ff/'))));
          await new Promise((resolve) => setImmediate(resolve));
        }
        await writing;
        for (const info of seen) expect(info).toEqual({ key: 'data/ff/big', size: big.length });
        expect(await collect(target.list('data/ff/'))).toEqual([{ key: 'data/ff/big', size: big.length }]);
      });
    });
  });
}

async function collect(objects: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const all: ObjectInfo[] = [];
  for await (const info of objects) all.push(info);
  return all;
}

async function listKeys(target: Target, prefix: string): Promise<string[]> {
  return (await collect(target.list(prefix))).map((info) => info.key).sort();
}

async function rejectionOf(pending: Promise<unknown>): Promise<unknown> {
  try {
    await pending;
  } catch (err) {
    return err;
  }
  throw new Error('expected the call to reject, but it resolved');
}

/** Compares without printing megabytes of bytes when they differ. */
function expectSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.length).toBe(expected.length);
  expect(Buffer.compare(actual, expected), 'contents differ').toBe(0);
}

async function inBatches<T>(items: T[], batchSize: number, work: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += batchSize) await Promise.all(items.slice(i, i + batchSize).map(work));
}

function byKey(a: ObjectInfo, b: ObjectInfo): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}
