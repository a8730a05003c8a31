import { execFileSync } from 'node:child_process';
import { mkdtemp, open, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VolumeSourceFactory } from './volume-source.js';
import { PartitionTableError, readGpt, readMbr } from './partitions.js';
import type { VolumeReader } from './extents.js';

const MiB = 1024 * 1024;
const run = (command: string, args: string[], input?: string): string => execFileSync(command, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });

let workDir: string;
beforeEach(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'cairn-partitions-'));
});
afterEach(async () => {
  await rm(workDir, { recursive: true, force: true });
});

async function disk(name: string, size: number, sfdiskScript: string): Promise<string> {
  const image = path.join(workDir, name);
  await writeFile(image, '');
  await truncate(image, size);
  run('sfdisk', ['-q', image], sfdiskScript);
  return image;
}

async function reader(image: string): Promise<VolumeReader & { close(): Promise<void> }> {
  const handle = await open(image, 'r');
  const { size } = await handle.stat();
  return {
    size,
    async read(into, offset, length) {
      await handle.read(into, 0, length, offset);
    },
    close: () => handle.close(),
  };
}

/** sfdisk's own view of the table, for comparison. */
function sfdiskPartitions(image: string): Array<{ start: number; size: number; type: string }> {
  return JSON.parse(run('sfdisk', ['--json', image])).partitiontable.partitions.map((p: { start: number; size: number; type: string }) => ({ start: p.start, size: p.size, type: p.type.toLowerCase() }));
}

describe('MBR', () => {
  it('reads primary, extended and logical partitions as sfdisk sees them', async () => {
    const image = await disk('mbr.img', 64 * MiB, 'label: dos\nstart=2048, size=8192, type=83, bootable\nstart=10240, size=8192, type=c\nstart=20480, type=5\nstart=22528, size=4096, type=83\nstart=28672, size=4096, type=82\n');
    const volume = await reader(image);
    const table = await readMbr(volume, 512);
    await volume.close();
    expect(table.entries.map((e) => e.index)).toEqual([1, 2, 5, 6]);
    const expected = sfdiskPartitions(image).filter((p) => p.type !== '5');
    expect(table.entries.map((e) => ({ start: e.offset / 512, size: e.size / 512, type: e.type.replace(/^0x0?/, '') }))).toEqual(expected);
    expect(table.entries[0]!.bootable).toBe(true);
  });

  it('refuses a logical partition chain that loops', async () => {
    const image = await disk('loop.img', 32 * MiB, 'label: dos\nstart=2048, type=5\nstart=4096, size=2048, type=83\nstart=8192, size=2048, type=83\n');
    const extendedStart = 2048;
    const handle = await open(image, 'r+');
    // The first extended boot record links to the second; make the second link to itself.
    const firstEbr = Buffer.alloc(512);
    await handle.read(firstEbr, 0, 512, extendedStart * 512);
    const secondRelative = firstEbr.readUInt32LE(462 + 8);
    const selfLink = Buffer.alloc(4);
    selfLink.writeUInt32LE(secondRelative);
    await handle.write(selfLink, 0, 4, (extendedStart + secondRelative) * 512 + 462 + 8);
    const typeByte = Buffer.from([0x05]);
    await handle.write(typeByte, 0, 1, (extendedStart + secondRelative) * 512 + 462 + 4);
    await handle.close();
    const volume = await reader(image);
    await expect(readMbr(volume, 512)).rejects.toThrow(/loops at sector/);
    await volume.close();
  });
});

describe('GPT', () => {
  it('reads entries with names and GUIDs as sfdisk wrote them', async () => {
    const image = await disk('gpt.img', 64 * MiB, 'label: gpt\nstart=2048, size=16384, type=L, name="root fs"\nstart=20480, size=8192, type=U\n');
    const volume = await reader(image);
    const table = await readGpt(volume, 512);
    await volume.close();
    expect(table.entries.map((e) => [e.index, e.offset / 512, e.size / 512, e.name])).toEqual([
      [1, 2048, 16384, 'root fs'],
      [2, 20480, 8192, ''],
    ]);
    expect(table.entries[1]!.type).toBe('c12a7328-f81f-11d2-ba4b-00a0c93ec93b');
  });

  it('refuses entries whose CRC does not match', async () => {
    const image = await disk('badcrc.img', 32 * MiB, 'label: gpt\nstart=2048, size=8192, type=L\n');
    const handle = await open(image, 'r+');
    await handle.write(Buffer.from([0x42]), 0, 1, 2 * 512 + 56); // inside entry 1's name
    await handle.close();
    const volume = await reader(image);
    await expect(readGpt(volume, 512)).rejects.toThrow(PartitionTableError);
    await expect(readGpt(volume, 512)).rejects.toThrow(/CRC/);
    await volume.close();
  });
});

describe('whole disks as sources', () => {
  const factory = new VolumeSourceFactory();

  it('images everything outside partitions exactly and lists each partition', async () => {
    const image = await disk('layout.img', 64 * MiB, 'label: gpt\nstart=2048, size=16384, type=L\nstart=20480, size=16384, type=L\n');
    const source = await factory.open({ type: 'volume', path: image, mode: 'used' }, { baseDir: workDir });
    try {
      expect(source.layout.partitionTable.type).toBe('gpt');
      expect(source.layout.partitions.map((p) => [p.index, p.offset, p.size, p.mode])).toEqual([
        [1, 2048 * 512, 16384 * 512, 'exact'],
        [2, 20480 * 512, 16384 * 512, 'exact'],
      ]);
      expect(source.layout.partitions[0]!.note).toBe('no recognised filesystem; imaged exactly');
      // Both partitions are unformatted, so everything is read: one extent over the whole disk.
      expect(source.extents).toEqual([{ offset: 0, length: 64 * MiB }]);
    } finally {
      await source.dispose();
    }
  });

  it('falls back to exact imaging of the whole disk when the GPT is damaged, and says why', async () => {
    const image = await disk('damaged.img', 32 * MiB, 'label: gpt\nstart=2048, size=8192, type=L\n');
    const handle = await open(image, 'r+');
    await handle.write(Buffer.from([0x42]), 0, 1, 2 * 512 + 56);
    await handle.close();
    const source = await factory.open({ type: 'volume', path: image, mode: 'used' }, { baseDir: workDir });
    try {
      expect(source.layout.mode).toBe('exact');
      expect(source.layout.note).toMatch(/CRC.*imaged exactly/);
      expect(source.extents).toEqual([{ offset: 0, length: 32 * MiB }]);
      expect(source.warnings.join('\n')).toMatch(/imaged exactly/);
    } finally {
      await source.dispose();
    }
  });

  it('falls back when partitions overlap or run past the end of the disk', async () => {
    const image = await disk('overlap.img', 32 * MiB, 'label: dos\nstart=2048, size=8192, type=83\nstart=12288, size=8192, type=83\n');
    const handle = await open(image, 'r+');
    const entry2Start = Buffer.alloc(4);
    entry2Start.writeUInt32LE(4096);
    await handle.write(entry2Start, 0, 4, 446 + 16 + 8); // partition 2 now starts inside partition 1
    await handle.close();
    const source = await factory.open({ type: 'volume', path: image, mode: 'used' }, { baseDir: workDir });
    try {
      expect(source.layout.note).toBe('partitions 1 and 2 overlap; the whole disk was imaged exactly');
    } finally {
      await source.dispose();
    }
    const past = await disk('past.img', 32 * MiB, 'label: dos\nstart=2048, size=8192, type=83\n');
    const h2 = await open(past, 'r+');
    const huge = Buffer.alloc(4);
    huge.writeUInt32LE(10_000_000);
    await h2.write(huge, 0, 4, 446 + 12);
    await h2.close();
    const source2 = await factory.open({ type: 'volume', path: past, mode: 'used' }, { baseDir: workDir });
    try {
      expect(source2.layout.note).toMatch(/MBR partition 1 .* ends past the end of the disk/);
    } finally {
      await source2.dispose();
    }
  });
});
