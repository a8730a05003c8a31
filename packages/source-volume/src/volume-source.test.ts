import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SourceError, type OpenedSource } from '@cairn/core';
import { VolumeSourceFactory } from './volume-source.js';

const MiB = 1024 * 1024;
const run = (command: string, args: string[], input?: string): string =>
  execFileSync(command, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });

let workDir: string;
const opened: OpenedSource[] = [];
const factory = new VolumeSourceFactory();

async function openVolume(settings: Record<string, unknown>, baseDir = workDir): Promise<OpenedSource> {
  // These tests are about reading; used-block maps have their own tests.
  const source = await factory.open({ type: 'volume', mode: 'exact', ...settings }, { baseDir });
  opened.push(source);
  return source;
}

async function makeImage(name: string, size: number): Promise<string> {
  const image = path.join(workDir, name);
  await writeFile(image, '');
  await truncate(image, size);
  return image;
}

async function readAll(source: OpenedSource): Promise<Buffer> {
  const bytes = Buffer.alloc(source.layout.size);
  await source.read(bytes, 0, bytes.length);
  return bytes;
}

beforeEach(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'cairn-volume-'));
});

afterEach(async () => {
  await Promise.all(opened.splice(0).map((source) => source.dispose()));
  await rm(workDir, { recursive: true, force: true });
});

describe('image files with a bare filesystem', () => {
  it('probes an ext4 image and reads back the bytes of a file stored in it', async () => {
    const content = path.join(workDir, 'content');
    await mkdir(content);
    const payload = randomBytes(3 * 4096);
    await writeFile(path.join(content, 'payload.bin'), payload);
    const image = await makeImage('ext4.img', 16 * MiB);
    run('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', content, image]);

    const source = await openVolume({ path: image });

    expect(source.path).toBe(image);
    expect(source.layout).toEqual({
      size: 16 * MiB,
      sectorSize: 512,
      kind: 'file',
      partitionTable: { type: 'none' },
      filesystem: 'ext4',
      mode: 'exact',
      partitions: [],
    });
    expect(source.extents).toEqual([{ offset: 0, length: 16 * MiB }]);
    expect(source.warnings).toEqual([]);

    // debugfs prints the filesystem blocks holding the file; read them through the source.
    const blocks = run('debugfs', ['-R', 'blocks /payload.bin', image]).trim().split(/\s+/).map(Number);
    expect(blocks).toHaveLength(3);
    const stored = Buffer.alloc(payload.length);
    for (const [index, block] of blocks.entries()) {
      await source.read(stored.subarray(index * 4096), block * 4096, 4096);
    }
    expect(stored.equals(payload)).toBe(true);
    expect((await readAll(source)).equals(await readFile(image))).toBe(true);
  });

  it.each([
    ['mkfs.ext2', 'ext2'],
    ['mkfs.ext3', 'ext3'],
  ])('tells %s apart by its feature flags', async (mkfs, expected) => {
    const image = await makeImage('ext.img', 8 * MiB);
    run(mkfs, ['-q', '-F', image]);
    expect((await openVolume({ path: image })).layout.filesystem).toBe(expected);
  });

  it.each([
    ['12', 4 * MiB, 'fat12'],
    ['16', 32 * MiB, 'fat16'],
    ['32', 64 * MiB, 'fat32'],
  ])('probes FAT%s made by mkfs.vfat', async (fatSize, size, expected) => {
    const image = await makeImage('fat.img', size);
    run('mkfs.vfat', ['-F', fatSize, image]);
    const source = await openVolume({ path: image });
    expect(source.layout.filesystem).toBe(expected);
    expect(source.layout.partitionTable).toEqual({ type: 'none' });
    expect(source.layout.size).toBe(size);
  });

  it('probes swap space', async () => {
    const image = await makeImage('swap.img', 4 * MiB);
    run('mkswap', ['-q', image]);
    expect((await openVolume({ path: image })).layout.filesystem).toBe('swap');
  });

  it('reports no filesystem for unrecognised content', async () => {
    const image = path.join(workDir, 'random.img');
    await writeFile(image, randomBytes(256 * 1024));
    const source = await openVolume({ path: image });
    expect(source.layout.filesystem).toBeUndefined();
    expect(source.layout.partitionTable).toEqual({ type: 'none' });
  });
});

describe('image files with a partition table', () => {
  it('recognises GPT and records the disk GUID', async () => {
    const image = await makeImage('gpt.img', 20 * MiB);
    run('sfdisk', ['-q', image], 'label: gpt\nstart=2048, size=16384, type=L\n');
    const diskId = run('sfdisk', ['--disk-id', image]).trim().toLowerCase();

    const source = await openVolume({ path: image });
    expect(source.layout.partitionTable).toMatchObject({ type: 'gpt', diskId, entriesLba: 2, entryCount: 128, firstUsableLba: 2048, backupLba: 40959 });
    expect(source.layout.partitions).toMatchObject([{ index: 1, offset: 2048 * 512, size: 16384 * 512, type: '0fc63daf-8483-4772-8e79-3d69d8477de4' }]);
    expect(source.layout.filesystem).toBeUndefined();
    expect(source.layout.sectorSize).toBe(512);
  });

  it('recognises MBR and records the disk signature', async () => {
    const image = await makeImage('mbr.img', 20 * MiB);
    run('sfdisk', ['-q', image], 'label: dos\nlabel-id: 0x1234abcd\nstart=2048, size=16384, type=83\n');

    const source = await openVolume({ path: image });
    expect(source.layout.partitionTable).toEqual({ type: 'mbr', diskId: '1234abcd' });
    expect(source.layout.filesystem).toBeUndefined();
  });

  it('does not take a FAT boot sector that carries a partition entry for an MBR', async () => {
    // --mbr=y writes a fake MBR entry spanning the disk into the FAT boot sector, as
    // removable media get them for firmware that insists on a partition table.
    const image = await makeImage('fat.img', 32 * MiB);
    run('mkfs.vfat', ['--mbr=y', '-F', '16', image]);
    const source = await openVolume({ path: image });
    expect(source.layout.partitionTable).toEqual({ type: 'none' });
    expect(source.layout.filesystem).toBe('fat16');
  });
});

describe('settings', () => {
  it('resolves a relative path against the base folder', async () => {
    await makeImage('relative.img', MiB);
    const source = await openVolume({ path: 'relative.img' });
    expect(source.path).toBe(path.join(workDir, 'relative.img'));
    expect(source.layout.size).toBe(MiB);
  });

  it('images a filesystem its mapper refuses exactly, and says why', async () => {
    // Swap, the example here once, has a map now (its header page); a LUKS volume is always refused, with its reason.
    const image = await makeImage('luks-used.img', 8 * MiB);
    execFileSync('cryptsetup', ['luksFormat', '--type', 'luks1', '-q', '--pbkdf-force-iterations', '1000', '--key-file', '-', image], { input: 'secret', stdio: ['pipe', 'ignore', 'ignore'] });
    const uuid = execFileSync('cryptsetup', ['luksUUID', image], { encoding: 'utf8' }).trim();
    const source = await openVolume({ path: image, mode: 'used' });
    const note = `LUKS1 encrypted volume (UUID ${uuid}, aes-xts-plain64): the payload is opaque without the key; imaged exactly`;
    expect(source.layout.mode).toBe('exact');
    expect(source.layout.note).toBe(note);
    expect(source.extents).toEqual([{ offset: 0, length: 8 * MiB }]);
    expect(source.warnings).toEqual([`${image}: ${note}`]);
  });

  it('maps a swap area to its header page', async () => {
    const image = await makeImage('swap-used.img', 8 * MiB);
    run('mkswap', ['-q', image]);
    const source = await openVolume({ path: image, mode: 'used' });
    expect([source.layout.mode, source.layout.filesystem, source.layout.note]).toEqual(['used', 'swap', undefined]);
    expect(source.extents).toEqual([{ offset: 0, length: 4096 }]);
  });

  it('names the volume rather than a filesystem when none is recognised', async () => {
    const image = await makeImage('blank.img', MiB);
    const source = await openVolume({ path: image, mode: 'used' });
    expect(source.layout.note).toBe('no recognised filesystem; imaged exactly');
  });
});

describe('refusals', () => {
  const refusal = (settings: Record<string, unknown>) => openVolume(settings).then(
    () => expect.unreachable('open should have been refused'),
    (err: unknown) => {
      expect(err).toBeInstanceOf(SourceError);
      return (err as SourceError).message;
    },
  );

  it('refuses a path that does not exist', async () => {
    const missing = path.join(workDir, 'disk.img');
    expect(await refusal({ path: missing })).toBe(`Source ${missing} does not exist`);
  });

  it('refuses a directory', async () => {
    expect(await refusal({ path: workDir })).toBe(`Source ${workDir} is a directory, not an image file or a block device`);
  });

  it('refuses a character device', async () => {
    expect(await refusal({ path: '/dev/null' })).toBe('Source /dev/null is a character device, not an image file or a block device');
  });

  it('refuses a FIFO without waiting for a writer', async () => {
    const fifo = path.join(workDir, 'pipe');
    run('mkfifo', [fifo]);
    expect(await refusal({ path: fifo })).toBe(`Source ${fifo} is a FIFO, not an image file or a block device`);
  });

  it('refuses an empty image file: there is nothing to back up', async () => {
    const image = path.join(workDir, 'empty.img');
    await writeFile(image, '');
    expect(await refusal({ path: image })).toBe(`Source ${image} is empty (0 bytes): there is nothing to back up`);
  });

  it('refuses an unknown mode', async () => {
    const image = await makeImage('disk.img', MiB);
    expect(await refusal({ path: image, mode: 'fast' })).toMatch(/"mode" must be "exact" or "used"/);
  });
});

describe('reading', () => {
  it('refuses to read past the end', async () => {
    const image = await makeImage('small.img', 4096);
    const source = await openVolume({ path: image });
    const buffer = new Uint8Array(8192);
    await expect(source.read(buffer, 2048, 4096)).rejects.toThrow(SourceError);
    await expect(source.read(buffer, 2048, 4096)).rejects.toThrow(/past the end of the volume \(4096 bytes\)/);
    await expect(source.read(buffer, 2048, 2048)).resolves.toBeUndefined();
  });

  it('serves concurrent reads at different offsets correctly', async () => {
    const image = path.join(workDir, 'random.img');
    const content = randomBytes(4 * MiB);
    await writeFile(image, content);
    const source = await openVolume({ path: image });
    const chunk = 64 * 1024;
    const offsets = Array.from({ length: content.length / chunk }, (_, i) => i * chunk).reverse();
    const results = await Promise.all(offsets.map(async (offset) => {
      const into = Buffer.alloc(chunk);
      await source.read(into, offset, chunk);
      return into.equals(content.subarray(offset, offset + chunk));
    }));
    expect(results.every(Boolean)).toBe(true);
  });

  it('names the offset where a volume that shrank after it was opened ends, in one line', async () => {
    const image = path.join(workDir, 'shrinking.img');
    await writeFile(image, randomBytes(MiB));
    const source = await openVolume({ path: image });
    await truncate(image, 300 * 1024);
    const error = await source.read(new Uint8Array(512 * 1024), 256 * 1024, 512 * 1024).then(() => undefined, (err: unknown) => err);
    expect(error).toBeInstanceOf(SourceError);
    expect((error as Error).message).toBe(
      `Cannot read ${image} at offset ${300 * 1024} (length ${468 * 1024}): the volume ends there, short of the size it had when the backup started (did it shrink while it was read?)`,
    );
  });

  it('refuses reads once disposed', async () => {
    const image = await makeImage('disk.img', 4096);
    const source = await openVolume({ path: image });
    await source.dispose();
    await expect(source.read(new Uint8Array(512), 0, 512)).rejects.toThrow(/the source is closed/);
  });
});
