import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Extent } from '@cairn/core';
import { mapFatUsedBlocks, parseFatBootSector } from './fat.js';
import { InconsistentMetadataError } from './inconsistent.js';
import { bytesReader, writeStaleImage } from './test-support.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const run = (command: string, args: string[]): string => execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

let workDir: string;

beforeEach(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'cairn-fat-'));
});

afterEach(async () => {
  await rm(workDir, { recursive: true, force: true });
});

/** An image file in the work folder, full of stale, non-zero bytes. */
async function staleImage(name: string, size: number): Promise<string> {
  const image = path.join(workDir, name);
  await writeStaleImage(image, size);
  return image;
}


/** A copy of the image holding only the mapped extents, zeros elsewhere. */
async function keepOnly(image: Buffer, extents: Extent[], name: string): Promise<string> {
  const restored = Buffer.alloc(image.length);
  for (const { offset, length } of extents) image.copy(restored, offset, offset, offset + length);
  const file = path.join(workDir, name);
  await writeFile(file, restored);
  return file;
}

function checkSorted(extents: Extent[], size: number): void {
  let end = -1;
  for (const extent of extents) {
    expect(extent.length).toBeGreaterThan(0);
    expect(extent.offset).toBeGreaterThan(end);
    end = extent.offset + extent.length;
  }
  expect(end).toBeLessThanOrEqual(size);
}

/** A tree of files and folders, returned as DOS paths with their contents. */
async function makeContent(): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>([
    ['README.TXT', Buffer.from('cairn used-block map test\n')],
    ['EMPTY.DAT', Buffer.alloc(0)],
    ['BIG.BIN', randomBytes(700 * KiB)],
    ['DOCS/NOTES.TXT', randomBytes(5 * KiB + 17)],
    ['DOCS/DEEP/NESTED/LEAF.BIN', randomBytes(130 * KiB + 1)],
    ['PHOTOS/A.JPG', randomBytes(64 * KiB)],
    ['PHOTOS/B.JPG', randomBytes(200 * KiB + 3)],
  ]);
  const root = path.join(workDir, 'content');
  for (const [name, bytes] of files) {
    await mkdir(path.dirname(path.join(root, name)), { recursive: true });
    await writeFile(path.join(root, name), bytes);
  }
  return files;
}

async function buildFat(bits: 12 | 16 | 32, size: number, mkfsArgs: string[] = []): Promise<{ image: string; files: Map<string, Buffer> }> {
  const image = await staleImage(`fat${bits}.img`, size);
  run('mkfs.vfat', ['-F', String(bits), ...mkfsArgs, image]);
  const files = await makeContent();
  const root = path.join(workDir, 'content');
  for (const entry of ['README.TXT', 'EMPTY.DAT', 'BIG.BIN', 'DOCS', 'PHOTOS']) run('mcopy', ['-i', image, '-s', path.join(root, entry), '::/']);
  // A deleted file leaves stale data in free clusters.
  await writeFile(path.join(workDir, 'GONE.BIN'), randomBytes(300 * KiB));
  run('mcopy', ['-i', image, path.join(workDir, 'GONE.BIN'), '::/GONE.BIN']);
  run('mdel', ['-i', image, '::/GONE.BIN']);
  return { image, files };
}

describe('mapFatUsedBlocks on real filesystems', () => {
  it.each([
    { bits: 12 as const, size: 8 * MiB, args: [] as string[] },
    { bits: 16 as const, size: 64 * MiB, args: [] as string[] },
    { bits: 32 as const, size: 64 * MiB, args: ['-s', '1'] },
    { bits: 32 as const, size: 300 * MiB, args: ['-s', '8'] },
  ])('FAT$bits ($size bytes, $args): the mapped blocks alone make a clean filesystem with every file intact', async ({ bits, size, args }) => {
    const { image, files } = await buildFat(bits, size, args);
    const original = await readFile(image);
    const fs = parseFatBootSector(original.subarray(0, 512), original.length);
    expect(fs.type).toBe(`fat${bits}`);

    const extents = await mapFatUsedBlocks(bytesReader(original));
    checkSorted(extents, original.length);

    const restored = await keepOnly(original, extents, 'restored.img');
    const fsck = spawnSync('fsck.vfat', ['-n', restored], { encoding: 'utf8' });
    expect(fsck.stdout + fsck.stderr).not.toMatch(/differ|free cluster|lost|chain|invalid|error/i);
    expect(fsck.status).toBe(0);
    for (const [name, bytes] of files) {
      const out = path.join(workDir, 'out.bin');
      run('mcopy', ['-n', '-i', restored, `::/${name}`, out]);
      expect((await readFile(out)).equals(bytes), name).toBe(true);
      await rm(out);
    }

    const clusterBytes = fs.sectorsPerCluster * fs.bytesPerSector;
    const metadata = fs.firstDataSector * fs.bytesPerSector;
    const content = [...files.values()].reduce((n, b) => n + Math.ceil(b.length / clusterBytes) * clusterBytes, 0);
    const used = extents.reduce((n, e) => n + e.length, 0);
    // Metadata plus file clusters plus a few directory clusters; the deleted file is not there.
    expect(used).toBeGreaterThanOrEqual(metadata + content);
    expect(used).toBeLessThanOrEqual(metadata + content + 8 * clusterBytes);
    expect(used).toBeLessThan(original.length / 4);
  });

  it('keeps a cluster that only the second FAT copy marks as allocated', async () => {
    const { image } = await buildFat(16, 64 * MiB);
    const original = await readFile(image);
    const fs = parseFatBootSector(original.subarray(0, 512), original.length);
    const before = await mapFatUsedBlocks(bytesReader(original));
    // Clear the whole first FAT except its reserved entries 0 and 1.
    const fatStart = fs.reservedSectors * fs.bytesPerSector;
    original.fill(0, fatStart + 4, fatStart + fs.sectorsPerFat * fs.bytesPerSector);
    expect(await mapFatUsedBlocks(bytesReader(original))).toEqual(before);
  });
});

describe('mapFatUsedBlocks on damaged metadata', () => {
  async function fat16(): Promise<{ bytes: Buffer; fatStart: number }> {
    const { image } = await buildFat(16, 64 * MiB);
    const bytes = await readFile(image);
    const fs = parseFatBootSector(bytes.subarray(0, 512), bytes.length);
    return { bytes, fatStart: fs.reservedSectors * fs.bytesPerSector };
  }

  it('rejects a FAT16 entry pointing past the last cluster', async () => {
    const { bytes, fatStart } = await fat16();
    bytes.writeUInt16LE(0xfff0, fatStart + 3 * 2);
    await expect(mapFatUsedBlocks(bytesReader(bytes))).rejects.toThrow(InconsistentMetadataError);
    await expect(mapFatUsedBlocks(bytesReader(bytes))).rejects.toThrow(/FAT copy 1: the entry of cluster 3 points to cluster 65520, outside clusters 2\.\.\d+/);
  });

  it('rejects a FAT32 entry pointing past the last cluster, and one in the second copy too', async () => {
    const { image } = await buildFat(32, 64 * MiB, ['-s', '1']);
    const bytes = await readFile(image);
    const fs = parseFatBootSector(bytes.subarray(0, 512), bytes.length);
    const secondFat = (fs.reservedSectors + fs.sectorsPerFat) * fs.bytesPerSector;
    bytes.writeUInt32LE((0xf0000000 | (fs.clusterCount + 2)) >>> 0, secondFat + 10 * 4);
    await expect(mapFatUsedBlocks(bytesReader(bytes))).rejects.toThrow(`FAT copy 2: the entry of cluster 10 points to cluster ${fs.clusterCount + 2}`);
  });

  it('rejects a FAT12 entry pointing past the last cluster (packed entries)', async () => {
    const { image } = await buildFat(12, 8 * MiB);
    const bytes = await readFile(image);
    const fs = parseFatBootSector(bytes.subarray(0, 512), bytes.length);
    const fatStart = fs.reservedSectors * fs.bytesPerSector;
    // Entry 5 (odd): high nibble of byte 7 and byte 8.
    const at = fatStart + Math.floor((5 * 3) / 2);
    const value = 0xff6; // 8 MiB holds 4081 clusters (2..4082)
    bytes[at] = (bytes[at]! & 0x0f) | ((value & 0x0f) << 4);
    bytes[at + 1] = value >> 4;
    await expect(mapFatUsedBlocks(bytesReader(bytes))).rejects.toThrow('FAT copy 1: the entry of cluster 5 points to cluster 4086');
  });

  it('rejects a truncated boot sector and a volume shorter than the filesystem', async () => {
    const { bytes } = await fat16();
    await expect(mapFatUsedBlocks(bytesReader(bytes.subarray(0, 300)))).rejects.toThrow('FAT: the boot sector is truncated (300 bytes)');
    await expect(mapFatUsedBlocks(bytesReader(bytes.subarray(0, 32 * MiB)))).rejects.toThrow(/FAT: the filesystem \(\d+ sectors of 512 bytes\) is larger than the volume \(33554432 bytes\)/);
  });

  it('rejects a BPB whose FAT type disagrees with its cluster count, and garbage', async () => {
    const { bytes } = await fat16();
    const fat32Bpb = Buffer.from(bytes);
    fat32Bpb.writeUInt32LE(fat32Bpb.readUInt16LE(22), 36);
    fat32Bpb.writeUInt16LE(0, 22);
    await expect(mapFatUsedBlocks(bytesReader(fat32Bpb))).rejects.toThrow(/the BPB is a FAT32 one .* make it FAT16/);
    const zeroSectorSize = Buffer.from(bytes);
    zeroSectorSize.writeUInt16LE(0, 11);
    await expect(mapFatUsedBlocks(bytesReader(zeroSectorSize))).rejects.toThrow('bytes per sector is 0');
    const random = randomBytes(MiB);
    random[510] = 0x55;
    random[511] = 0xaa;
    random[0] = 0xeb;
    await expect(mapFatUsedBlocks(bytesReader(random))).rejects.toThrow(InconsistentMetadataError);
  });
});
