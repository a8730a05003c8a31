import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Extent } from '@cairn/core';
import { InconsistentMetadataError } from './inconsistent.js';
import { bytesReader, writeStaleImage } from './test-support.js';
import { mapNtfsUsedBlocks, parseNtfsBootSector } from './ntfs.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const run = (command: string, args: string[]): Buffer => execFileSync(command, args, { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * MiB });

let workDir: string;

beforeEach(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'cairn-ntfs-'));
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


const FILES: ReadonlyArray<[string, number]> = [
  ['readme.txt', 40],
  ['small.bin', 700],
  ['medium.bin', 100 * KiB + 5],
  ['large.bin', 3 * MiB + 123],
  ['photo.jpg', 513 * KiB],
];

async function buildNtfs(size: number, mkfsArgs: string[]): Promise<{ image: string; files: Map<string, Buffer> }> {
  const image = await staleImage('ntfs.img', size);
  run('mkntfs', ['-F', '-Q', ...mkfsArgs, image]);
  const files = new Map<string, Buffer>();
  for (const [name, length] of FILES) {
    const bytes = randomBytes(length);
    const local = path.join(workDir, name);
    await writeFile(local, bytes);
    run('ntfscp', ['-f', image, local, `/${name}`]);
    files.set(name, bytes);
  }
  run('ntfsfix', ['-n', image]); // the original is clean to begin with
  return { image, files };
}

async function keepOnly(image: Buffer, extents: Extent[]): Promise<string> {
  const restored = Buffer.alloc(image.length);
  for (const { offset, length } of extents) image.copy(restored, offset, offset, offset + length);
  const file = path.join(workDir, 'restored.img');
  await writeFile(file, restored);
  return file;
}

describe('mapNtfsUsedBlocks on real filesystems', () => {
  it.each([
    { size: 32 * MiB, args: ['-s', '512', '-c', '512'], cluster: 512 },
    { size: 48 * MiB, args: ['-s', '512', '-c', '4096'], cluster: 4096 },
    { size: 64 * MiB, args: ['-s', '4096', '-c', '4096'], cluster: 4096 },
    // 0xF8 in the boot sector: 2^(256 - 248) sectors per cluster.
    { size: 96 * MiB, args: ['-s', '512', '-c', '131072'], cluster: 131072 },
  ])('mkntfs $args: the mapped blocks alone make a clean filesystem with every file intact', async ({ size, args, cluster }) => {
    const { image, files } = await buildNtfs(size, args);
    const original = await readFile(image);
    const fs = parseNtfsBootSector(original.subarray(0, 512), original.length);
    expect(fs.clusterSize).toBe(cluster);
    // mkntfs leaves the last sector of the file for the backup boot sector.
    expect(fs.totalSectors * fs.bytesPerSector).toBe(size - fs.bytesPerSector);

    const extents = await mapNtfsUsedBlocks(bytesReader(original));
    let end = -1;
    for (const extent of extents) {
      expect(extent.offset).toBeGreaterThan(end);
      end = extent.offset + extent.length;
    }
    expect(end).toBe(size);

    const restored = await keepOnly(original, extents);
    const check = spawnSync('ntfsfix', ['-n', restored], { encoding: 'utf8' });
    expect(check.stdout + check.stderr).toMatch(/processed successfully/);
    expect(check.stdout + check.stderr).not.toMatch(/corrupt|error|fail|mismatch/i);
    expect(check.status).toBe(0);
    for (const [name, bytes] of files) expect(run('ntfscat', [restored, `/${name}`]).equals(bytes), name).toBe(true);

    const content = [...files.values()].reduce((n, b) => n + Math.ceil(b.length / cluster) * cluster, 0);
    const used = extents.reduce((n, e) => n + e.length, 0);
    // File data plus NTFS metadata ($MFT, $LogFile, $MFTMirr, $Bitmap, $Secure, $UpCase…);
    // the stale bytes the quick format left in free space are not kept.
    expect(used).toBeGreaterThanOrEqual(content);
    expect(used).toBeLessThan(content + size / 4);
  });
});

describe('mapNtfsUsedBlocks on damaged metadata', () => {
  /** Offsets of MFT record 6 and of the first run of its $DATA runlist in a fresh image. */
  async function fresh(): Promise<{ bytes: Buffer; record: number; run: number; recordSize: number }> {
    const { image } = await buildNtfs(32 * MiB, ['-s', '512', '-c', '4096']);
    const bytes = await readFile(image);
    const fs = parseNtfsBootSector(bytes.subarray(0, 512), bytes.length);
    const record = fs.mftLcn * fs.clusterSize + 6 * fs.recordSize;
    let attr = record + bytes.readUInt16LE(record + 0x14);
    while (bytes.readUInt32LE(attr) !== 0x80) attr += bytes.readUInt32LE(attr + 4);
    expect(bytes[attr + 8]).toBe(1);
    return { bytes, record, run: attr + bytes.readUInt16LE(attr + 32), recordSize: fs.recordSize };
  }

  it('rejects a $Bitmap runlist that points past the end of the volume', async () => {
    const { bytes, run } = await fresh();
    const header = bytes[run]!;
    const lengthSize = header & 0x0f;
    const offsetSize = header >> 4;
    const lcn = run + 1 + lengthSize;
    bytes.fill(0, lcn, lcn + offsetSize);
    bytes.writeUIntLE(8191, lcn, 2); // one past the last of 8191 clusters
    await expect(mapNtfsUsedBlocks(bytesReader(bytes))).rejects.toThrow(InconsistentMetadataError);
    await expect(mapNtfsUsedBlocks(bytesReader(bytes))).rejects.toThrow(/NTFS: the runlist of the \$DATA attribute of MFT record 6 has a run of clusters 8191\.\.\d+, past the end of the volume \(8191 clusters\)/);
  });

  it('rejects MFT record 6 whose update sequence check fails', async () => {
    const { bytes, record, recordSize } = await fresh();
    bytes[record + recordSize - 2]! ^= 0xff;
    await expect(mapNtfsUsedBlocks(bytesReader(bytes))).rejects.toThrow(/NTFS: MFT record 6 fails its update sequence check in 512-byte block 1/);
  });

  it('rejects a bitmap that leaves the MFT free', async () => {
    const { bytes, run } = await fresh();
    const fs = parseNtfsBootSector(bytes.subarray(0, 512), bytes.length);
    const header = bytes[run]!;
    const bitmapLcn = bytes.readUIntLE(run + 1 + (header & 0x0f), header >> 4);
    const byte = bitmapLcn * fs.clusterSize + Math.floor(fs.mftLcn / 8);
    bytes[byte]! &= ~(1 << fs.mftLcn % 8);
    await expect(mapNtfsUsedBlocks(bytesReader(bytes))).rejects.toThrow(/\$Bitmap marks clusters of \$MFT \(\d+\.\.\d+\) as free/);
  });

  it('rejects a truncated boot sector, a short volume and a non-NTFS boot sector', async () => {
    const { bytes } = await fresh();
    await expect(mapNtfsUsedBlocks(bytesReader(bytes.subarray(0, 200)))).rejects.toThrow('NTFS: the boot sector is truncated (200 bytes)');
    await expect(mapNtfsUsedBlocks(bytesReader(bytes.subarray(0, 16 * MiB)))).rejects.toThrow(/is larger than the volume \(16777216 bytes\)/);
    const badCluster = Buffer.from(bytes);
    badCluster[13] = 0x83;
    await expect(mapNtfsUsedBlocks(bytesReader(badCluster))).rejects.toThrow('sectors per cluster is encoded as 0x83');
    const farMft = Buffer.from(bytes);
    farMft.writeBigUInt64LE(1n << 40n, 0x30);
    await expect(mapNtfsUsedBlocks(bytesReader(farMft))).rejects.toThrow(/the MFT starts at cluster 1099511627776/);
    const random = randomBytes(MiB);
    Buffer.from('NTFS    ').copy(random, 3);
    await expect(mapNtfsUsedBlocks(bytesReader(random))).rejects.toThrow(InconsistentMetadataError);
  });
});
