import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Extent } from '@cairn/core';
import type { VolumeReader } from '../extents.js';
import { crc32cUpdate, mapExt4UsedBlocks } from './ext4.js';
import { bytesReader, expectWellFormed } from './test-support.js';
import { InconsistentMetadataError } from './inconsistent.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

const run = (command: string, args: string[]): string =>
  execFileSync(command, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 64 * MiB });

let workDir: string;
let sourceDir: string;
/** Relative path → sha256 of every regular file in `sourceDir`. */
const sourceFiles = new Map<string, string>();

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'cairn-ext4-'));
  sourceDir = path.join(workDir, 'source');
  const add = async (relative: string, data: Uint8Array) => {
    const file = path.join(sourceDir, relative);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, data);
    sourceFiles.set(relative, sha256(data));
  };
  await add('big.bin', randomBytes(9 * MiB));
  await add('medium/one.bin', randomBytes(700 * KiB));
  await add('medium/two.bin', randomBytes(1234567));
  await add('empty', new Uint8Array(0));
  await add('text.txt', Buffer.from('cairn\n'.repeat(1000)));
  for (let i = 0; i < 300; i++) await add(`many/dir${i % 7}/small-${i}.dat`, randomBytes(1 + ((i * 7919) % 20000)));
  await symlink('text.txt', path.join(sourceDir, 'short-link'));
  await symlink('x'.repeat(200), path.join(sourceDir, 'long-link'));
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

/** A stale, non-zero pattern that mkfs leaves in free blocks with -E nodiscard. */
async function fillWithPattern(image: string, size: number): Promise<void> {
  const chunk = Buffer.alloc(4 * MiB);
  for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE((0xdeadbeef ^ (i * 2654435761)) >>> 0, i);
  const handle = await open(image, 'w');
  try {
    for (let at = 0; at < size; at += chunk.length) await handle.write(chunk, 0, Math.min(chunk.length, size - at), at);
  } finally {
    await handle.close();
  }
}

let imageCounter = 0;
async function makeFilesystem(size: number, mkfsArgs: string[], withFiles = true): Promise<string> {
  const image = path.join(workDir, `fs-${imageCounter++}.img`);
  await fillWithPattern(image, size);
  run('mkfs.ext4', ['-q', '-F', ...mkfsArgs, ...(withFiles ? ['-d', sourceDir] : []), image]);
  return image;
}

/** A VolumeReader over a file or a block device (whose size stat reports as 0: pass it). */
async function withReader<T>(image: string, use: (volume: VolumeReader) => Promise<T>, deviceSize?: number): Promise<T> {
  const handle = await open(image, 'r');
  try {
    const size = deviceSize ?? (await handle.stat()).size;
    return await use({
      size,
      async read(into, offset, length) {
        let done = 0;
        while (done < length) {
          const { bytesRead } = await handle.read(into, done, length - done, offset + done);
          if (bytesRead === 0) throw new Error(`short read at ${offset + done}`);
          done += bytesRead;
        }
      },
    });
  } finally {
    await handle.close();
  }
}


const mapImage = (image: string) => withReader(image, mapExt4UsedBlocks);

/** Copies only `extents` of `image` into a new sparse file of the same size: what a restore writes. */
async function keepOnly(image: string, extents: Extent[]): Promise<string> {
  const kept = `${image}.kept`;
  const source = await open(image, 'r');
  const target = await open(kept, 'w');
  try {
    const { size } = await source.stat();
    await target.truncate(size);
    const buffer = Buffer.alloc(4 * MiB);
    for (const extent of extents) {
      for (let at = extent.offset; at < extent.offset + extent.length; at += buffer.length) {
        const length = Math.min(buffer.length, extent.offset + extent.length - at);
        await source.read(buffer, 0, length, at);
        await target.write(buffer, 0, length, at);
      }
    }
  } finally {
    await source.close();
    await target.close();
  }
  return kept;
}

function superblockFields(image: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of run('dumpe2fs', ['-h', image]).split('\n')) {
    const match = /^([^:]+):\s*(.*)$/.exec(line);
    if (match) fields[match[1]!.trim()] = match[2]!.trim();
  }
  return fields;
}

/**
 * The inode-table blocks past each group's last inode ever handed out, as dumpe2fs reports the
 * groups ("N unused inodes", INODE_UNINIT): used in the bitmaps, holding no data, not mapped.
 */
function unusedInodeTableBytes(image: string, blockSize: number): number {
  const report = run('dumpe2fs', [image]);
  const field = (name: string) => Number(new RegExp(`^${name}:\\s*(\\d+)`, 'm').exec(report)?.[1]);
  const [perGroup, inodeSize, tableBlocks] = [field('Inodes per group'), field('Inode size'), field('Inode blocks per group')];
  let unused = 0;
  for (const group of report.split(/^Group \d+:/m).slice(1)) {
    const unusedInodes = group.includes('INODE_UNINIT') ? perGroup : Number(/(\d+) unused inodes/.exec(group)?.[1] ?? 0);
    unused += tableBlocks - Math.ceil(((perGroup - unusedInodes) * inodeSize) / blockSize);
  }
  return unused * blockSize;
}

/** The bytes of data and metadata in use: the blocks the superblock counts as used, less unused inode-table ends. */
function inUseBytes(image: string, fields: Record<string, string>): number {
  const blockSize = Number(fields['Block size']);
  return (Number(fields['Block count']) - Number(fields['Free blocks'])) * blockSize - unusedInodeTableBytes(image, blockSize);
}

/** Restores from the extents alone and checks the result with e2fsck and debugfs. */
async function checkRoundTrip(image: string, size: number): Promise<{ extents: Extent[]; mapped: number; used: number }> {
  const extents = await mapImage(image);
  expectWellFormed(extents, size);
  const kept = await keepOnly(image, extents);

  expectCleanFsck(kept);
  await expectFilesIntact(image, kept);

  const fields = superblockFields(image);
  const blockSize = Number(fields['Block size']);
  const used = inUseBytes(image, fields);
  const mapped = extents.reduce((sum, extent) => sum + extent.length, 0);
  // Every used block is mapped; the only extra is metadata the bitmaps leave out (at most a few blocks).
  expect(mapped).toBeGreaterThanOrEqual(used);
  expect(mapped - used).toBeLessThanOrEqual(16 * blockSize);
  expect(mapped).toBeLessThan(size / 2);

  // Stale data really was there: the restored image differs from the original in free space.
  const original = await readFile(image);
  const restored = await readFile(kept);
  expect(original.equals(restored)).toBe(false);
  return { extents, mapped, used };
}

/** Every source file, read back with debugfs from `kept`, equals the original. */
async function expectFilesIntact(image: string, kept: string): Promise<void> {
  const out = path.join(`${image}.out`);
  await mkdir(out);
  const names = [...sourceFiles.keys()];
  const commands = names.map((name, i) => `dump /${name} ${path.join(out, String(i))}`).join('\n');
  await writeFile(`${image}.cmds`, commands + '\n');
  run('debugfs', ['-f', `${image}.cmds`, kept]);
  for (const [i, name] of names.entries()) {
    expect(sha256(await readFile(path.join(out, String(i)))), name).toBe(sourceFiles.get(name));
  }
  expect(run('debugfs', ['-R', 'cat /long-link', kept])).toBe('x'.repeat(200));
}

describe('mapExt4UsedBlocks on real filesystems', () => {
  const variants: Array<{ name: string; size: number; args: string[]; blockUninit?: boolean }> = [
    { name: 'ext4 defaults (flex_bg, 64bit, metadata_csum)', size: 300 * MiB, args: ['-E', 'nodiscard'], blockUninit: true },
    { name: 'ext4 without flex_bg', size: 300 * MiB, args: ['-O', '^flex_bg', '-E', 'nodiscard'], blockUninit: true },
    { name: 'ext4 without sparse_super', size: 160 * MiB, args: ['-O', '^sparse_super,^resize_inode', '-g', '8192', '-E', 'nodiscard'] },
    { name: 'ext4 with 1 KiB blocks and a partial last group', size: 77 * MiB + 5 * KiB, args: ['-b', '1024', '-E', 'nodiscard'], blockUninit: true },
    { name: 'ext4 with 32-bit descriptors and gdt_csum (crc16)', size: 200 * MiB, args: ['-O', '^64bit,^metadata_csum,uninit_bg', '-g', '8192', '-E', 'nodiscard'], blockUninit: true },
    { name: 'ext4 with 64bit, 1 KiB blocks and small groups', size: 64 * MiB, args: ['-O', '64bit', '-b', '1024', '-g', '2048', '-E', 'nodiscard'], blockUninit: true },
    { name: 'ext4 with lazy_itable_init', size: 256 * MiB, args: ['-E', 'lazy_itable_init=1,nodiscard', '-g', '8192'], blockUninit: true },
    { name: 'ext4 with meta_bg', size: 256 * MiB, args: ['-O', 'meta_bg,^resize_inode', '-b', '1024', '-E', 'nodiscard'], blockUninit: true },
    { name: 'ext4 with sparse_super2', size: 256 * MiB, args: ['-O', 'sparse_super2', '-g', '8192', '-E', 'nodiscard'], blockUninit: true },
    { name: 'ext3', size: 100 * MiB, args: ['-t', 'ext3', '-E', 'nodiscard'] },
    { name: 'ext2', size: 100 * MiB, args: ['-t', 'ext2', '-E', 'nodiscard'] },
  ];

  for (const variant of variants) {
    it(`${variant.name}: a restore from the extents alone is clean and holds every file`, async () => {
      const image = await makeFilesystem(variant.size, variant.args);
      if (variant.blockUninit) expect(run('dumpe2fs', [image])).toContain('BLOCK_UNINIT');
      const { mapped } = await checkRoundTrip(image, variant.size);
      expect(mapped).toBeGreaterThan(9 * MiB);
    });
  }

  it('maps only the filesystem when the volume is larger than it', async () => {
    const size = 96 * MiB;
    const image = path.join(workDir, 'larger-volume.img');
    await fillWithPattern(image, size);
    run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', '-d', sourceDir, image, '64M']);
    const extents = await mapImage(image);
    const last = extents[extents.length - 1]!;
    expect(last.offset + last.length).toBeLessThanOrEqual(64 * MiB);
    await checkRoundTrip(image, size);
  });
});

async function expectRejection(mapping: Promise<unknown>, message: RegExp): Promise<void> {
  const error = await mapping.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(InconsistentMetadataError);
  expect((error as Error).message).toMatch(/^ext4: /);
  expect((error as Error).message).toMatch(message);
}

const expectRefusal = (image: string, message: RegExp) => expectRejection(mapImage(image), message);

describe('mapExt4UsedBlocks on damaged or hostile metadata', () => {

  it('refuses a block bitmap location past the end of the filesystem (descriptor checksum kept valid)', async () => {
    const image = await makeFilesystem(64 * MiB, ['-b', '1024'], false);
    await writeFile(`${image}.cmds`, 'set_bg 3 block_bitmap 99999999\nset_bg 3 checksum calc\n');
    run('debugfs', ['-w', '-f', `${image}.cmds`, image]);
    expect(run('dumpe2fs', [image])).not.toContain('EXPECTED'); // dumpe2fs agrees the checksum is valid
    await expectRefusal(image, /group 3 block bitmap at block 99999999 is past the end of the filesystem/);
  });

  it('refuses an inode table that runs past the end, on ext2 without checksums', async () => {
    const image = await makeFilesystem(64 * MiB, ['-t', 'ext2', '-b', '4096'], false);
    const blocks = 64 * MiB / 4096;
    run('debugfs', ['-w', '-R', `set_bg 0 inode_table ${blocks - 2}`, image]);
    await expectRefusal(image, /group 0 inode table at block 16382 is past the end/);
  });

  it('refuses a block bitmap that does not mark its own metadata (a zeroed bitmap on ext2)', async () => {
    const image = await makeFilesystem(64 * MiB, ['-t', 'ext2', '-b', '4096'], true);
    const bitmapBlock = Number(/Block bitmap at (\d+)/.exec(run('dumpe2fs', [image]))![1]);
    const handle = await open(image, 'r+');
    await handle.write(Buffer.alloc(4096), 0, 4096, bitmapBlock * 4096);
    await handle.close();
    await expectRefusal(image, new RegExp(`group 0 block bitmap does not mark block ${bitmapBlock} \\(block bitmap of group 0\\) as in use`));
  });

  it('refuses group metadata that overlaps other metadata (flex_bg, no checksums)', async () => {
    const image = await makeFilesystem(64 * MiB, ['-b', '4096', '-g', '4096', '-O', '^metadata_csum,^uninit_bg'], false);
    const blockBitmap = Number(/Block bitmap at (\d+)/.exec(run('dumpe2fs', [image]))![1]);
    run('debugfs', ['-w', '-R', `set_bg 2 inode_bitmap ${blockBitmap}`, image]);
    await expectRefusal(image, new RegExp(`inode bitmap of group 2 at block ${blockBitmap} overlaps the block bitmap of group 0`));
  });

  it('refuses a group descriptor whose bytes were changed behind its checksum', async () => {
    for (const args of [['-b', '4096'], ['-b', '4096', '-O', '^metadata_csum,uninit_bg']]) {
      const image = await makeFilesystem(64 * MiB, args, false);
      const handle = await open(image, 'r+');
      // 4 KiB blocks: the descriptor table is block 1; flip a byte of group 0's block bitmap address.
      const byte = Buffer.alloc(1);
      await handle.read(byte, 0, 1, 4096);
      byte[0] ^= 0x40;
      await handle.write(byte, 0, 1, 4096);
      await handle.close();
      await expectRefusal(image, /group 0 descriptor checksum mismatch/);
    }
  });

  it('refuses a block bitmap whose checksum does not match', async () => {
    const image = await makeFilesystem(64 * MiB, ['-b', '4096'], true);
    const fields = superblockFields(image);
    const bitmapBlock = Number(/Block bitmap at (\d+)/.exec(run('dumpe2fs', [image]))![1]);
    expect(fields['Filesystem features']).toContain('metadata_csum');
    const handle = await open(image, 'r+');
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, bitmapBlock * 4096 + 1000);
    byte[0] ^= 0x01;
    await handle.write(byte, 0, 1, bitmapBlock * 4096 + 1000);
    await handle.close();
    await expectRefusal(image, /group 0 block bitmap checksum mismatch/);
  });


  it('refuses a filesystem that was not cleanly unmounted or has errors', async () => {
    const image = await makeFilesystem(64 * MiB, ['-t', 'ext2'], false);
    run('debugfs', ['-w', '-R', 'ssv state 0', image]);
    await expectRefusal(image, /not cleanly unmounted/);
    run('debugfs', ['-w', '-R', 'ssv state 3', image]);
    await expectRefusal(image, /errors/);
  });

  it('refuses unknown INCOMPAT features, with and without a superblock checksum', async () => {
    const ext2 = await makeFilesystem(64 * MiB, ['-t', 'ext2'], false);
    const handle = await open(ext2, 'r+');
    const field = Buffer.alloc(4);
    await handle.read(field, 0, 4, 1024 + 0x60);
    field.writeUInt32LE((field.readUInt32LE(0) | 0x80000000) >>> 0, 0);
    await handle.write(field, 0, 4, 1024 + 0x60);
    await handle.close();
    await expectRefusal(ext2, /unsupported INCOMPAT features 0x80000000/);

    // metadata_csum: set the bit and recompute the superblock checksum as the kernel would.
    const ext4 = await makeFilesystem(64 * MiB, [], false);
    const data = await readFile(ext4);
    const sb = data.subarray(1024, 2048);
    sb.writeUInt32LE((sb.readUInt32LE(0x60) | 0x100000) >>> 0, 0x60);
    sb.writeUInt32LE(crc32cUpdate(0xffffffff, sb, 0, 0x3fc), 0x3fc);
    await expect(mapExt4UsedBlocks(bytesReader(data))).rejects.toThrow(/unsupported INCOMPAT features 0x100000/);
    // Without recomputing, the checksum catches the change first.
    sb.writeUInt32LE(sb.readUInt32LE(0x60) ^ 0x100000, 0x60);
    await expect(mapExt4UsedBlocks(bytesReader(data))).rejects.toThrow(/superblock checksum mismatch/);
  });

  it('refuses what e2fsprogs refuses to open: a newer revision level, a cluster size other than the block size without bigalloc', async () => {
    for (const [offset, value, reason] of [
      [0x4c, 2, /unknown revision level 2 \(s_rev_level\)/],
      [0x1c, 3, /cluster size \(s_log_cluster_size 3\) differs from the block size/],
    ] as const) {
      const data = await readFile(await makeFilesystem(64 * MiB, ['-t', 'ext2'], false));
      data.writeUInt32LE(value, 1024 + offset);
      await expect(mapExt4UsedBlocks(bytesReader(data))).rejects.toThrow(reason);
      const image = path.join(workDir, 'patched.img');
      await writeFile(image, data);
      expect(spawnSync('debugfs', ['-R', 'stats', image], { encoding: 'utf8' }).stderr).toMatch(/while trying to open|while opening filesystem/);
    }
  });

  it('refuses bigalloc, which it does not understand', async () => {
    const image = await makeFilesystem(64 * MiB, ['-O', 'bigalloc', '-C', '16384'], false);
    await expectRefusal(image, /bigalloc/);
  });

  it('refuses a truncated image and a volume that is not ext at all', async () => {
    const image = await makeFilesystem(64 * MiB, [], false);
    await truncate(image, 48 * MiB);
    await expectRefusal(image, /the filesystem is 67108864 bytes .* but the volume holds only 50331648/);
    await truncate(image, 1500);
    await expectRefusal(image, /too small to hold a superblock/);
    await expect(mapExt4UsedBlocks(bytesReader(new Uint8Array(1 * MiB)))).rejects.toThrow(InconsistentMetadataError);
  });

  // Randomly damaged metadata: ext4-fuzz.test.ts.
});

// ---------------------------------------------------------------------------------------------
// needs_recovery: mounted and frozen filesystems, and the journal superblock.

const PENDING_JOURNAL = /^ext4: the journal holds transactions not yet written back \(mounted and not frozen\?\); freeze it with fsfreeze or unmount it$/;

function features(image: string): string[] {
  return superblockFields(image)['Filesystem features']!.split(/\s+/);
}

/**
 * Runs `e2fsck -fn` and accepts only a clean check: exit status 0 (which alone is not enough:
 * with -n, wrong summary counts still exit 0) and no output line besides the version banner,
 * the five pass headers, the summary line and the lines in `allowed`.
 */
function expectCleanFsck(image: string, allowed: string[] = []): void {
  const result = spawnSync('e2fsck', ['-fn', image], { encoding: 'utf8' });
  expect(result.status, `${result.stdout}${result.stderr}`).toBe(0);
  const lines = `${result.stdout}${result.stderr}`.split('\n').filter((line) => line.trim() !== '');
  const unexpected = lines.filter(
    (line) =>
      !/^e2fsck \d+\.\d+(\.\d+)? \(/.test(line) &&
      !/^Pass [1-5]: Checking (inodes, blocks, and sizes|directory structure|directory connectivity|reference counts|group summary information)$/.test(line) &&
      !(line.startsWith(`${image}: `) && /^\d+\/\d+ files \(\d+\.\d% non-contiguous\), \d+\/\d+ blocks$/.test(line.slice(image.length + 2))) &&
      !allowed.includes(line),
  );
  expect(unexpected).toEqual([]);
}

/** Physical block of logical block 0 of the journal inode, as debugfs sees it. */
function journalSuperblockBlock(image: string): number {
  return Number(run('debugfs', ['-R', 'bmap <8> 0', image]).trim());
}

const blockSizeOf = (image: string) => Number(superblockFields(image)['Block size']);

async function patchJournalSuperblock(image: string, change: (jsb: Buffer) => void, fixChecksum: boolean): Promise<void> {
  const at = journalSuperblockBlock(image) * blockSizeOf(image);
  const handle = await open(image, 'r+');
  try {
    const jsb = Buffer.alloc(1024);
    await handle.read(jsb, 0, 1024, at);
    expect(jsb.readUInt32BE(0)).toBe(0xc03b3998);
    change(jsb);
    if (fixChecksum) {
      // jbd2_superblock_csum: crc32c(~0) over the 1024 bytes with s_checksum zeroed.
      jsb.writeUInt32BE(0, 0xfc);
      jsb.writeUInt32BE(crc32cUpdate(0xffffffff, jsb), 0xfc);
    }
    await handle.write(jsb, 0, 1024, at);
  } finally {
    await handle.close();
  }
}

/**
 * A filesystem on a loop device, mounted, for `body`. Teardown always runs, in order and each
 * step even if an earlier one failed: thaw (if still frozen), umount, losetup -d of the device
 * losetup printed.
 */
async function withMountedLoop(
  image: string,
  body: (loop: { device: string; mountPoint: string; deviceSize: number; freeze(): void; thaw(): void }) => Promise<void>,
): Promise<void> {
  const device = run('losetup', ['-f', '--show', image]).trim();
  const mountPoint = await mkdtemp(path.join(workDir, 'mnt-'));
  let mounted = false;
  let frozen = false;
  try {
    run('mount', [device, mountPoint]);
    mounted = true;
    const deviceSize = Number(run('blockdev', ['--getsize64', device]).trim());
    await body({
      device,
      mountPoint,
      deviceSize,
      freeze() {
        run('fsfreeze', ['-f', mountPoint]);
        frozen = true;
      },
      thaw() {
        run('fsfreeze', ['-u', mountPoint]);
        frozen = false;
      },
    });
  } finally {
    const step = (what: string, action: () => void) => {
      try {
        action();
      } catch (err) {
        console.error(`teardown: ${what} failed`, err);
      }
    };
    if (frozen) step(`fsfreeze -u ${mountPoint}`, () => run('fsfreeze', ['-u', mountPoint]));
    if (mounted) step(`umount ${mountPoint}`, () => run('umount', [mountPoint]));
    step(`losetup -d ${device}`, () => run('losetup', ['-d', device]));
  }
}

/** Copies a block device to a file (what `dd` of the device gives). */
function copyDevice(device: string, file: string): void {
  run('dd', [`if=${device}`, `of=${file}`, 'bs=1M', 'status=none']);
}

const mapDevice = (device: string, size: number) => withReader(device, mapExt4UsedBlocks, size);

describe('mapExt4UsedBlocks with needs_recovery (mounted, frozen)', () => {
  const variants = [
    { name: 'ext4 (extent-mapped journal, journal checksums)', size: 256 * MiB, args: ['-E', 'nodiscard'], checksummedJournal: true },
    { name: 'ext3 (journal mapped by block pointers)', size: 128 * MiB, args: ['-t', 'ext3', '-E', 'nodiscard'], checksummedJournal: false },
  ];

  for (const variant of variants) {
    it(`${variant.name}: a frozen filesystem maps, and a restore from the extents alone is clean and holds every file`, async () => {
      const image = await makeFilesystem(variant.size, variant.args, false);
      const frozenCopy = `${image}.frozen`;
      let deviceExtents: Extent[] = [];
      await withMountedLoop(image, async ({ device, mountPoint, deviceSize, freeze }) => {
        run('cp', ['-a', `${sourceDir}/.`, mountPoint]);
        // Allocated, then freed again: the bitmaps must say so once the journal is checkpointed.
        await writeFile(path.join(mountPoint, 'deleted.bin'), randomBytes(3 * MiB));
        run('sync', []);
        await rm(path.join(mountPoint, 'deleted.bin'));
        run('sync', []);
        freeze();
        // Mapped while frozen, from the device itself, then copied while still frozen.
        deviceExtents = await mapDevice(device, deviceSize);
        copyDevice(device, frozenCopy);
      });

      expectWellFormed(deviceExtents, variant.size);
      expect(await mapImage(frozenCopy)).toEqual(deviceExtents);
      expect(superblockFields(frozenCopy)['Journal start']).toBe('0');
      // Linux's ext4_freeze clears needs_recovery after flushing the journal (and thaw sets it
      // again); copies of a frozen filesystem with the flag set (other kernels, snapshots) are
      // made by setting it: the journal is the one the kernel left.
      const flagged = `${image}.flagged`;
      await writeFile(flagged, await readFile(frozenCopy));
      if (!features(flagged).includes('needs_recovery')) run('debugfs', ['-w', '-R', 'feature needs_recovery', flagged]);
      expect(features(flagged)).toContain('needs_recovery');
      const extents = await mapImage(flagged);
      expect(extents).toEqual(deviceExtents);

      const kept = await keepOnly(flagged, extents);
      // e2fsck -n skips recovery with exactly this warning and must find nothing else ...
      expectCleanFsck(kept, ['Warning: skipping journal recovery because doing a read-only filesystem check.']);
      // ... and with the flag cleared (the journal is empty), nothing at all.
      run('debugfs', ['-w', '-R', 'feature -needs_recovery', kept]);
      expect(features(kept)).not.toContain('needs_recovery');
      expectCleanFsck(kept);
      await expectFilesIntact(flagged, kept);
      expect(run('debugfs', ['-R', 'stat /deleted.bin', kept])).toBe('');

      const fields = superblockFields(flagged);
      const blockSize = Number(fields['Block size']);
      const used = inUseBytes(flagged, fields);
      const mapped = extents.reduce((sum, extent) => sum + extent.length, 0);
      expect(mapped).toBeGreaterThanOrEqual(used);
      expect(mapped - used).toBeLessThanOrEqual(16 * blockSize);
      expect(mapped).toBeLessThan(variant.size / 2);
      expect((await readFile(flagged)).equals(await readFile(kept))).toBe(false); // stale data was left out

      if (variant.checksummedJournal) {
        // The kernel turned on journal checksums at mount. A forged s_start is caught by the
        // checksum; with the checksum recomputed, it is refused as pending transactions.
        expect(superblockFields(flagged)['Journal features']).toContain('journal_checksum_v3');
        const setStart = (jsb: Buffer) => jsb.writeUInt32BE(jsb.readUInt32BE(20), 28); // s_start = s_first
        await patchJournalSuperblock(flagged, setStart, false);
        await expectRefusal(flagged, /checksum mismatch in the journal superblock at block \d+/);
        await patchJournalSuperblock(flagged, setStart, true);
        expect(Number(superblockFields(flagged)['Journal start'])).toBeGreaterThan(0);
        await expectRefusal(flagged, PENDING_JOURNAL);
      }
    });
  }

  it('refuses a mounted filesystem that is not frozen, whose journal holds committed transactions', async () => {
    const image = await makeFilesystem(128 * MiB, ['-E', 'nodiscard'], false);
    const liveCopy = `${image}.live`;
    await withMountedLoop(image, async ({ device, mountPoint, deviceSize }) => {
      await writeFile(path.join(mountPoint, 'fresh.bin'), randomBytes(2 * MiB));
      await mkdir(path.join(mountPoint, 'dir'));
      // sync commits the transactions to the journal but does not checkpoint them: s_start != 0.
      run('sync', []);
      await expectRejection(mapDevice(device, deviceSize), PENDING_JOURNAL);
      copyDevice(device, liveCopy);
    });
    expect(features(liveCopy)).toContain('needs_recovery');
    expect(Number(superblockFields(liveCopy)['Journal start'])).toBeGreaterThan(0);
    await expectRefusal(liveCopy, PENDING_JOURNAL);
  });
});

describe('mapExt4UsedBlocks with needs_recovery (journal metadata)', () => {
  /** A fresh filesystem (whose journal mkfs leaves empty) with needs_recovery set. */
  const flaggedFilesystem = async (args: string[], withFiles = false) => {
    const image = await makeFilesystem(64 * MiB, args, withFiles);
    const plain = await mapImage(image);
    run('debugfs', ['-w', '-R', 'feature needs_recovery', image]);
    expect(features(image)).toContain('needs_recovery');
    return { image, plain };
  };

  it('maps an empty journal exactly as without the flag (ext4, ext3, and a journal with an extent index block)', async () => {
    for (const args of [[], ['-t', 'ext3'], ['-b', '1024', '-g', '1024', '-O', '^flex_bg', '-J', 'size=4']]) {
      const { image, plain } = await flaggedFilesystem(args, true);
      expect(await mapImage(image)).toEqual(plain);
    }
    // The last one really goes through an index node.
    const image = await makeFilesystem(64 * MiB, ['-b', '1024', '-g', '1024', '-O', '^flex_bg', '-J', 'size=4'], false);
    expect(run('debugfs', ['-R', 'ex <8>', image])).toMatch(/^\s*0\/\s*1\s/m);
  });

  it('refuses a forged non-zero s_start (journals without checksums as mkfs makes them; an out-of-range one as corrupt)', async () => {
    const { image } = await flaggedFilesystem([]);
    expect(superblockFields(image)['Journal features']).toBe('(none)');
    await patchJournalSuperblock(image, (jsb) => jsb.writeUInt32BE(jsb.readUInt32BE(20), 28), false); // s_start = s_first
    expect(Number(superblockFields(image)['Journal start'])).toBeGreaterThan(0);
    await expectRefusal(image, PENDING_JOURNAL);

    const ext3 = (await flaggedFilesystem(['-t', 'ext3'])).image;
    await patchJournalSuperblock(ext3, (jsb) => jsb.writeUInt32BE(5, 28), false);
    await expectRefusal(ext3, PENDING_JOURNAL);
    await patchJournalSuperblock(ext3, (jsb) => jsb.writeUInt32BE(0xfffffff0, 28), false);
    await expectRefusal(ext3, /log start 4294967280 outside/);
  });

  it('refuses an external journal, a missing journal inode and a filesystem with errors', async () => {
    let { image } = await flaggedFilesystem([]);
    run('debugfs', ['-w', '-R', 'ssv journal_dev 0x801', image]);
    await expectRefusal(image, /external journal device \(s_journal_dev 0x801\)/);
    ({ image } = await flaggedFilesystem([]));
    run('debugfs', ['-w', '-R', 'ssv journal_uuid 01234567-89ab-cdef-0123-456789abcdef', image]);
    await expectRefusal(image, /external journal device/);
    ({ image } = await flaggedFilesystem([]));
    run('debugfs', ['-w', '-R', 'ssv journal_inum 0', image]);
    await expectRefusal(image, /s_journal_inum is 0/);
    ({ image } = await flaggedFilesystem([]));
    run('debugfs', ['-w', '-R', 'ssv state 3', image]);
    await expectRefusal(image, /errors/);
  });

  it('refuses a journal inode or journal superblock that does not add up', async () => {
    // Extent pointing past the end (debugfs keeps the inode checksum valid).
    let { image } = await flaggedFilesystem([]);
    run('debugfs', ['-w', '-R', 'sif <8> block[5] 99999999', image]);
    await expectRefusal(image, /first journal extent at block 99999999 lies outside/);
    // The inode changed behind its checksum.
    ({ image } = await flaggedFilesystem([]));
    const inodeTable = Number(/Inode table at (\d+)/.exec(run('dumpe2fs', [image]))![1]);
    const inodeSize = Number(superblockFields(image)['Inode size']);
    let handle = await open(image, 'r+');
    await handle.write(Buffer.from([0x77]), 0, 1, inodeTable * blockSizeOf(image) + 7 * inodeSize + 0x28 + 20);
    await handle.close();
    await expectRefusal(image, /journal inode 8 checksum mismatch/);
    // Not a journal superblock at all.
    ({ image } = await flaggedFilesystem([]));
    handle = await open(image, 'r+');
    await handle.write(Buffer.alloc(1024), 0, 1024, journalSuperblockBlock(image) * blockSizeOf(image));
    await handle.close();
    await expectRefusal(image, /bad magic 0x0 in the journal superblock at block \d+ \(expected 0xc03b3998\)/);
    // Wrong block type and a journal longer than its inode, with valid checksums.
    ({ image } = await flaggedFilesystem([]));
    await patchJournalSuperblock(image, (jsb) => jsb.writeUInt32BE(5, 4), true);
    await expectRefusal(image, /block type 5 \(expected 3 or 4\)/);
    ({ image } = await flaggedFilesystem([]));
    await patchJournalSuperblock(image, (jsb) => jsb.writeUInt32BE(jsb.readUInt32BE(16) + 1, 16), true);
    await expectRefusal(image, /claims \d+ blocks but the journal inode holds \d+/);
    // A journal that recorded an error.
    ({ image } = await flaggedFilesystem([]));
    await patchJournalSuperblock(image, (jsb) => jsb.writeInt32BE(-5, 32), true);
    await expectRefusal(image, /s_errno -5/);
    // Block pointer past the end (ext3, no extents).
    ({ image } = await flaggedFilesystem(['-t', 'ext3']));
    run('debugfs', ['-w', '-R', 'sif <8> block[0] 99999999', image]);
    await expectRefusal(image, /journal superblock \(i_block\[0\]\) at block 99999999 lies outside/);
    // The journal superblock's block freed in the bitmap (ext3, no checksums).
    ({ image } = await flaggedFilesystem(['-t', 'ext3']));
    const first = journalSuperblockBlock(image);
    run('debugfs', ['-w', '-R', `freeb ${first}`, image]);
    await expectRefusal(image, new RegExp(`does not mark block ${first} \\(journal superblock\\) as in use`));
  });

  it('refuses a journal extent index block changed behind its checksum', async () => {
    const { image } = await flaggedFilesystem(['-b', '1024', '-g', '1024', '-O', '^flex_bg', '-J', 'size=4']);
    const index = Number(/^\s*0\/\s*1\s+1\/\s*1\s+0\s*-\s*\d+\s+(\d+)/m.exec(run('debugfs', ['-R', 'ex <8>', image]))![1]);
    const handle = await open(image, 'r+');
    await handle.write(Buffer.from([0xee]), 0, 1, index * 1024 + 12 + 12 * 3 + 4);
    await handle.close();
    await expectRefusal(image, new RegExp(`extent block checksum mismatch in the journal extent tree block ${index}`));
  });
});

describe('mapExt4UsedBlocks reads only metadata', () => {
  // How long mapping takes is measured where timings belong: `pnpm bench` times whole backups
  // in mode used, mapping included. Here what is counted is what it reads.
  it('maps a 4 GiB filesystem from the superblock, the descriptors and one bitmap block per group, a flex group per read', async () => {
    const image = path.join(workDir, 'big.img');
    await writeFile(image, '');
    await truncate(image, 4 * GiB);
    run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', '-d', sourceDir, image]);
    const reads: Array<{ offset: number; length: number }> = [];
    const extents = await withReader(image, (volume) =>
      mapExt4UsedBlocks({
        size: volume.size,
        read(into, offset, length) {
          reads.push({ offset, length });
          return volume.read(into, offset, length);
        },
      }),
    );
    const fields = superblockFields(image);
    const blockSize = Number(fields['Block size']);
    const groups = Math.ceil(Number(fields['Block count']) / Number(fields['Blocks per group']));
    const descriptorBlocks = Math.ceil((groups * Number(fields['Group descriptor size'])) / blockSize);
    const flexGroups = Math.ceil(groups / Number(fields['Flex block group size']));
    expect(groups).toBe(32);
    expect(reads.length).toBe(1 + 1 + flexGroups); // superblock, descriptor table, bitmaps of each flex group
    expect(reads.reduce((sum, read) => sum + read.length, 0)).toBe(1024 + descriptorBlocks * blockSize + groups * blockSize);
    expect(reads[0]).toEqual({ offset: 1024, length: 1024 });

    const used = inUseBytes(image, fields);
    const mapped = extents.reduce((sum, extent) => sum + extent.length, 0);
    expect(mapped).toBeGreaterThanOrEqual(used);
    expect(mapped - used).toBeLessThanOrEqual(16 * blockSize);
  });

  it('leaves out the never-used ends of the inode tables: a sparse 256 GiB filesystem maps to its used inodes, not its 4 GiB of tables', async () => {
    const image = path.join(workDir, 'huge.img');
    await writeFile(image, '');
    await truncate(image, 256 * GiB);
    run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard,lazy_itable_init=1,lazy_journal_init=1', '-d', sourceDir, image]);
    const fields = superblockFields(image);
    const blockSize = Number(fields['Block size']);
    const tables = Number(fields['Inode count']) * Number(fields['Inode size']);
    const extents = await withReader(image, (volume) => mapExt4UsedBlocks(volume));
    const mapped = extents.reduce((sum, extent) => sum + extent.length, 0);
    const used = inUseBytes(image, fields);
    expect(tables).toBe(4 * GiB);
    expect(mapped).toBeGreaterThanOrEqual(used);
    expect(mapped - used).toBeLessThanOrEqual(16 * blockSize);
    // The 1 GiB journal mke2fs makes at this size, the bitmaps and the first inode blocks; whole tables would add 4 GiB.
    expect(mapped).toBeLessThan(1.2 * GiB);
  });
});
