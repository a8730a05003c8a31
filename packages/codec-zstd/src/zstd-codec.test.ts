import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createTestPluginContext } from '@cairn/core/testing';
import { activate } from './index.js';
import zstd from './zstd-codec.js';

const MiB = 1024 * 1024;

function textData(size: number): Buffer {
  const line = 'sector 0042 of /dev/nvme0n1p2: ext4 superblock, inode table, journal\n';
  return Buffer.from(line.repeat(Math.ceil(size / line.length)).slice(0, size));
}

describe('zstd codec', () => {
  it('is named zstd with header id 1', () => {
    expect(zstd).toMatchObject({ name: 'zstd', headerId: 1 });
  });

  describe.each([1, 3, 19])('at level %i', (level) => {
    const codec = zstd.create({ type: 'zstd', level });

    it.each([
      ['random', randomBytes(MiB)],
      ['zero', Buffer.alloc(MiB)],
      ['text', textData(MiB + 123)],
      ['empty', Buffer.alloc(0)],
      ['one-byte', Buffer.from([0xfe])],
    ])('round-trips %s data', (_, data) => {
      const compressed = codec.compress(data);
      const restored = codec.decompress(compressed, data.length);
      expect(Buffer.compare(restored, data)).toBe(0);
    });

    it('shrinks compressible data', () => {
      expect(codec.compress(Buffer.alloc(MiB)).length).toBeLessThan(1024);
      expect(codec.compress(textData(MiB)).length).toBeLessThan(MiB / 20);
    });
  });

  it('compresses each input correctly into its own buffer, used again by later calls (no copy per chunk)', () => {
    const codec = zstd.create({ type: 'zstd' });
    const inputs = [textData(4096), randomBytes(8192), textData(MiB), Buffer.alloc(100)];
    const outputs = inputs.map((input) => {
      const compressed = codec.compress(input);
      expect(Buffer.compare(Buffer.from(codec.decompress(compressed, input.length)), input)).toBe(0);
      return compressed;
    });
    expect(outputs[3]!.buffer).toBe(outputs[2]!.buffer); // no larger input between them
  });

  it('uses level 3 when no level is given', () => {
    const data = textData(MiB);
    const atDefault = zstd.create({ type: 'zstd' }).compress(data);
    expect(Buffer.compare(atDefault, zstd.create({ type: 'zstd', level: 3 }).compress(data))).toBe(0);
  });

  it.each([0, 20, 2.5, '3'])('refuses level %j', (level) => {
    expect(() => zstd.create({ type: 'zstd', level })).toThrow(RangeError);
  });

  describe('decompress', () => {
    const codec = zstd.create({ type: 'zstd', level: 3 });
    const data = textData(256 * 1024);
    const compressed = Buffer.from(codec.compress(data));

    it('throws on corrupted data', () => {
      for (const position of [0, 4, compressed.length >> 1, compressed.length - 1]) {
        const damaged = Buffer.from(compressed);
        damaged[position]! ^= 0xff;
        expect(() => codec.decompress(damaged, data.length), `byte ${position}`).toThrow(/zstd/);
      }
    });

    it('throws on truncated data or trailing garbage', () => {
      expect(() => codec.decompress(compressed.subarray(0, compressed.length - 8), data.length)).toThrow(/zstd/);
      expect(() => codec.decompress(Buffer.concat([compressed, randomBytes(16)]), data.length)).toThrow(/zstd/);
    });

    it.each([
      ['shorter', -1],
      ['longer', 1],
    ])('throws when rawLength is %s than the data was', (_, delta) => {
      expect(() => codec.decompress(compressed, data.length + delta)).toThrow(/zstd/);
    });

    it('still works after a failure', () => {
      expect(() => codec.decompress(randomBytes(100), 100)).toThrow();
      expect(Buffer.compare(codec.decompress(compressed, data.length), data)).toBe(0);
    });
  });
});

describe('activate', () => {
  it('registers the codec module by URL, importable on its own', async () => {
    const context = await createTestPluginContext(fileURLToPath(new URL('..', import.meta.url)));
    await activate(context);
    const registration = context.codecs.byName('zstd');
    expect(registration).toMatchObject({ name: 'zstd', headerId: 1 });
    expect(registration!.moduleUrl).toMatch(/^file:.*\/zstd-codec\.(js|ts)$/);
    const { default: loaded } = (await import(registration!.moduleUrl)) as { default: typeof zstd };
    expect(loaded).toMatchObject({ name: 'zstd', headerId: 1 });
    await context.subscriptions.dispose();
    expect(context.codecs.byName('zstd')).toBeUndefined();
  });
});
