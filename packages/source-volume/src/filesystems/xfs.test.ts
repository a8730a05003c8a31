// mapXfsUsedBlocks on real XFS filesystems made by mkfs.xfs (over stale, non-zero bytes), with
// files written through a loop mount (v5) or a mkfs protofile (v4, which this kernel no longer
// mounts). The map is judged against xfs_db: the blocks left out are exactly the free extents
// `freesp -d` lists except the AGFL's (which the map keeps: they are not in the bnobt), and a
// restore of the mapped bytes alone passes `xfs_repair -n` with every file intact.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Extent } from '@cairn/core';
import type { VolumeReader } from '../extents.js';
import { InconsistentMetadataError } from './inconsistent.js';
import { bytesReader, expectWellFormed, writeStaleImage } from './test-support.js';
import { mapXfsUsedBlocks, xfsChecksum } from './xfs.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 64 * MiB;
/** mkfs.xfs refuses filesystems under 300 MB unless it believes it runs under fstests. */
const MKFS_ENV = { ...process.env, TEST_DIR: '1', TEST_DEV: '1', QA_CHECK_FS: '1' };

const run = (command: string, args: string[]): string => execFileSync(command, args, { encoding: 'utf8', env: MKFS_ENV, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * MiB });
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

let workDir: string;
const mounted: string[] = [];
beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'cairn-xfs-'));
});
afterAll(async () => {
  // A test that failed between mount and umount leaves its mount here; mount -o loop's device goes with it.
  for (const mountPoint of mounted.reverse()) spawnSync('umount', [mountPoint]);
  await rm(workDir, { recursive: true, force: true });
});

let counter = 0;
async function makeXfs(mkfsArgs: string[], size = SIZE): Promise<string> {
  const image = path.join(workDir, `xfs-${counter++}.img`);
  await writeStaleImage(image, size);
  run('mkfs.xfs', ['-q', '-f', ...mkfsArgs, image]);
  return image;
}

/** Mounts `image` through a loop device, runs `use` on the mount point, unmounts. */
async function withMount<T>(image: string, use: (dir: string) => Promise<T>, options: string[] = []): Promise<T> {
  const dir = path.join(workDir, `mnt-${counter++}`);
  await mkdir(dir);
  run('mount', ['-o', ['loop', ...options].join(','), image, dir]);
  mounted.push(dir);
  try {
    return await use(dir);
  } finally {
    run('umount', [dir]);
    mounted.splice(mounted.indexOf(dir), 1);
  }
}

/** Writes a deterministic tree under `dir` and returns relative path → sha256. */
async function writeFiles(dir: string, count: number, maxSize: number): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  await mkdir(path.join(dir, 'sub'), { recursive: true });
  await writeFile(path.join(dir, 'big.bin'), randomBytes(5 * MiB));
  for (let i = 0; i < count; i++) {
    const name = `sub/f${i}.bin`;
    const data = randomBytes(1 + ((i * 7919) % maxSize));
    await writeFile(path.join(dir, name), data);
    files.set(name, sha256(data));
  }
  files.set('big.bin', sha256(await readFile(path.join(dir, 'big.bin'))));
  return files;
}

async function withReader<T>(image: string, use: (volume: VolumeReader) => Promise<T>): Promise<T> {
  const handle = await open(image, 'r');
  try {
    const { size } = await handle.stat();
    return await use({ size, read: async (into, offset, length) => void (await handle.read(into, 0, length, offset)) });
  } finally {
    await handle.close();
  }
}

const mapImage = (image: string) => withReader(image, mapXfsUsedBlocks);

function sbField(image: string, name: string): number {
  return Number(new RegExp(`^${name} = (\\S+)$`, 'm').exec(run('xfs_db', ['-r', '-c', 'sb 0', '-c', 'p', image]))![1]);
}

/** xfs_db's free extents (AGFL blocks included), as absolute block ranges, and the AGF counts. */
function xfsDbFreeSpace(image: string): { free: Array<[number, number]>; freeBlocks: number; agflBlocks: number } {
  const agBlocks = sbField(image, 'agblocks');
  const agCount = sbField(image, 'agcount');
  const free = [...run('xfs_db', ['-r', '-c', 'freesp -d', image]).matchAll(/^\s+(\d+)\s+(\d+)\s+(\d+)$/gm)].map(
    (m): [number, number] => [Number(m[1]) * agBlocks + Number(m[2]), Number(m[3])],
  );
  let freeBlocks = 0;
  let agflBlocks = 0;
  for (let ag = 0; ag < agCount; ag++) {
    const agf = run('xfs_db', ['-r', '-c', `agf ${ag}`, '-c', 'p freeblks flcount', image]);
    freeBlocks += Number(/freeblks = (\d+)/.exec(agf)![1]);
    agflBlocks += Number(/flcount = (\d+)/.exec(agf)![1]);
  }
  return { free, freeBlocks, agflBlocks };
}

/** The map against xfs_db: every block it leaves out is free there, and only the AGFL's free blocks are kept. */
function expectMapMatchesXfsDb(image: string, extents: Extent[]): void {
  const blockSize = sbField(image, 'blocksize');
  const dataBlocks = sbField(image, 'dblocks');
  const { free, freeBlocks, agflBlocks } = xfsDbFreeSpace(image);
  const mapped = extents.reduce((sum, extent) => sum + extent.length, 0);
  expect(mapped).toBe((dataBlocks - freeBlocks) * blockSize);
  const isMapped = (block: number) => extents.some((e) => e.offset <= block * blockSize && block * blockSize < e.offset + e.length);
  let freeButMapped = 0;
  for (const [start, count] of free) {
    for (let block = start; block < start + count; block++) if (isMapped(block)) freeButMapped++;
  }
  // The AGFL's blocks are free to xfs_db and in use to the bnobt: exactly those are kept.
  expect(freeButMapped).toBe(agflBlocks);
}

/** Copies only `extents` of `image` into a sparse file of the same size: what a restore writes. */
async function keepOnly(image: string, extents: Extent[]): Promise<string> {
  const kept = `${image}.kept`;
  const bytes = await readFile(image);
  const out = await open(kept, 'w');
  try {
    await out.truncate(bytes.length);
    for (const extent of extents) await out.write(bytes, extent.offset, extent.length, extent.offset);
  } finally {
    await out.close();
  }
  return kept;
}

function expectCleanXfsRepair(image: string): void {
  const result = spawnSync('xfs_repair', ['-n', '-f', '-o', 'force_geometry', image], { encoding: 'utf8' });
  expect(result.status, `${result.stdout}${result.stderr}`).toBe(0);
}

async function expectFilesIntact(image: string, files: Map<string, string>): Promise<void> {
  await withMount(image, async (dir) => {
    for (const [name, digest] of files) expect(sha256(await readFile(path.join(dir, name))), name).toBe(digest);
  });
}

describe('mapXfsUsedBlocks on real filesystems', () => {
  const variants = [
    { name: 'v5, 4 KiB blocks, 4 AGs', args: ['-d', 'agcount=4'] },
    { name: 'v5, 1 KiB blocks, 1 AG', args: ['-b', 'size=1024', '-d', 'agcount=1'] },
    { name: 'v5, 4 KiB sectors, 3 AGs, rmapbt and reflink', args: ['-s', 'size=4096', '-d', 'agcount=3', '-m', 'rmapbt=1,reflink=1'] },
    // A log stripe unit pads every log record, and 256 KiB log buffers need extended record headers.
    { name: 'v5, 64 KiB data and log stripe units, 256 KiB log buffers', args: ['-d', 'su=64k,sw=1', '-l', 'su=64k'], mount: ['logbsize=256k'] },
  ];
  for (const variant of variants) {
    it(`${variant.name}: leaves out exactly the bnobt's free extents; a restore of the map alone is clean and holds every file`, async () => {
      const image = await makeXfs(variant.args);
      const files = await withMount(image, (dir) => writeFiles(dir, 200, 40 * KiB), variant.mount);
      const extents = await mapImage(image);
      expectWellFormed(extents, SIZE);
      expectMapMatchesXfsDb(image, extents);
      const mapped = extents.reduce((sum, extent) => sum + extent.length, 0);
      expect(mapped, 'files plus metadata and the log, far from the whole volume').toBeLessThan(SIZE / 2);
      const kept = await keepOnly(image, extents);
      expectCleanXfsRepair(kept);
      await expectFilesIntact(kept, files);
    });
  }

  it('walks a bnobt of two levels (1 KiB blocks, every other small file deleted) and agrees with xfs_db', async () => {
    const image = await makeXfs(['-b', 'size=1024', '-d', 'agcount=1']);
    const files = await withMount(image, async (dir) => {
      const all = await writeFiles(dir, 700, 1 * KiB);
      run('sync', []); // allocate the blocks now: delayed allocation would otherwise never place the deleted files
      for (let i = 0; i < 700; i += 2) {
        await rm(path.join(dir, `sub/f${i}.bin`));
        all.delete(`sub/f${i}.bin`);
      }
      return all;
    });
    expect(run('xfs_db', ['-r', '-c', 'agf 0', '-c', 'p bnolevel', image])).toMatch(/bnolevel = [2-9]/);
    const extents = await mapImage(image);
    expectWellFormed(extents, SIZE);
    expectMapMatchesXfsDb(image, extents);
    const kept = await keepOnly(image, extents);
    expectCleanXfsRepair(kept);
    await expectFilesIntact(kept, files);
  });

  it('v4 (no CRCs, -m crc=0) with files from a protofile: agrees with xfs_db and restores clean', async () => {
    const source = path.join(workDir, 'proto-source');
    await mkdir(source);
    const lines = ['/dev/null', '0 0', 'd--755 0 0'];
    const files = new Map<string, string>();
    for (let i = 0; i < 40; i++) {
      const data = randomBytes(1 + i * 13_000);
      await writeFile(path.join(source, `f${i}`), data);
      files.set(`f${i}`, sha256(data));
      lines.push(`f${i} ---644 0 0 ${path.join(source, `f${i}`)}`);
    }
    lines.push('$', '');
    await writeFile(path.join(workDir, 'proto'), lines.join('\n'));
    const image = await makeXfs(['-m', 'crc=0', '-d', 'agcount=2', '-p', path.join(workDir, 'proto')]);
    expect(sbField(image, 'versionnum') & 0xf).toBe(4);
    const extents = await mapImage(image);
    expectWellFormed(extents, SIZE);
    expectMapMatchesXfsDb(image, extents);
    const kept = await keepOnly(image, extents);
    expectCleanXfsRepair(kept);
    // The kernel mounts no v4 filesystem any more: each file is read back from the restored
    // image through the block map xfs_db gives for it.
    const restored = await readFile(kept);
    for (const [name, digest] of files) expect(sha256(readThroughXfsDb(image, restored, name)), name).toBe(digest);
  });

  it('maps only the filesystem when the volume is larger than it', async () => {
    const image = await makeXfs(['-d', 'size=48m,agcount=2']);
    const extents = await mapImage(image);
    expectWellFormed(extents, SIZE);
    expect(extents.at(-1)!.offset + extents.at(-1)!.length).toBeLessThanOrEqual(48 * MiB);
    expectMapMatchesXfsDb(image, extents);
  });
});

/** A file's bytes read from `bytes` (an image of the same filesystem) by the extents and size xfs_db reports for it. */
function readThroughXfsDb(image: string, bytes: Buffer, name: string): Buffer {
  const blockSize = sbField(image, 'blocksize');
  const output = run('xfs_db', ['-r', '-c', `path /${name}`, '-c', 'bmap', '-c', 'p core.size', image]);
  const parts: Buffer[] = [];
  for (const m of output.matchAll(/^data offset (\d+) startblock (\d+) \(\d+\/\d+\) count (\d+)/gm)) {
    expect(Number(m[1]), `${name}: extents in order, no holes`).toBe(parts.reduce((sum, part) => sum + part.length, 0) / blockSize);
    parts.push(bytes.subarray(Number(m[2]) * blockSize, (Number(m[2]) + Number(m[3])) * blockSize));
  }
  return Buffer.concat(parts).subarray(0, Number(/core\.size = (\d+)/.exec(output)![1]));
}

async function expectRefused(bytes: Uint8Array, reason: RegExp): Promise<void> {
  const attempt = mapXfsUsedBlocks(bytesReader(bytes));
  await expect(attempt).rejects.toBeInstanceOf(InconsistentMetadataError);
  await expect(attempt).rejects.toThrow(reason);
}

/** A copy of `bytes` with one bit of the byte at `offset` flipped (copied whole: a per-byte callback over 64 MiB is slow). */
function flipped(bytes: Uint8Array, offset: number): Uint8Array {
  const copy = Uint8Array.from(bytes);
  copy[offset] = copy[offset]! ^ 1;
  return copy;
}

/** Re-seals a v5 metadata buffer's CRC after a deliberate change, so that only the change itself is judged. */
function reseal(bytes: Uint8Array, start: number, length: number, crcOffset: number): void {
  const buffer = bytes.subarray(start, start + length);
  new DataView(buffer.buffer, buffer.byteOffset).setUint32(crcOffset, xfsChecksum(buffer, crcOffset), true);
}

describe('mapXfsUsedBlocks on damaged, dirty or unsupported filesystems', () => {
  let pristine: Buffer;
  let v4: Buffer;
  beforeAll(async () => {
    const image = await makeXfs(['-d', 'agcount=2']);
    await withMount(image, (dir) => writeFiles(dir, 20, 10 * KiB));
    pristine = await readFile(image);
    v4 = await readFile(await makeXfs(['-m', 'crc=0', '-d', 'agcount=2']));
  });

  it('refuses a filesystem whose log is dirty (shut down while mounted), naming the log', async () => {
    const image = await makeXfs(['-d', 'agcount=2']);
    await withMount(image, async (dir) => {
      await writeFile(path.join(dir, 'late'), randomBytes(MiB));
      run('sync', []);
      run('xfs_io', ['-x', '-c', 'shutdown', dir]);
    });
    expect(run('xfs_logprint', ['-t', image])).toMatch(/DIRTY/);
    await expectRefused(await readFile(image), /^xfs: the log is dirty \(unmounted uncleanly\)/);
  });

  it('refuses a mounted filesystem even when frozen: freezing covers the log with a dummy record, not an unmount record', async () => {
    const image = await makeXfs(['-d', 'agcount=2']);
    await withMount(image, async (dir) => {
      await writeFile(path.join(dir, 'late'), randomBytes(MiB));
      run('fsfreeze', ['-f', dir]);
      try {
        await expectRefused(await readFile(image), /^xfs: the log is dirty \(unmounted uncleanly\)/);
      } finally {
        run('fsfreeze', ['-u', dir]);
      }
    });
    // Unmounted, the same filesystem maps.
    expect((await mapImage(image)).length).toBeGreaterThan(0);
  });

  it('refuses an external log and a realtime subvolume', async () => {
    const logDevice = path.join(workDir, 'external-log.img');
    await writeFile(logDevice, Buffer.alloc(0));
    run('truncate', ['-s', '16M', logDevice]);
    await expectRefused(await readFile(await makeXfs(['-l', `logdev=${logDevice},size=2000b`])), /the log is external/);
    const rtDevice = path.join(workDir, 'rt.img');
    await writeFile(rtDevice, Buffer.alloc(0));
    run('truncate', ['-s', '16M', rtDevice]);
    await expectRefused(await readFile(await makeXfs(['-r', `rtdev=${rtDevice}`])), /realtime subvolume/);
  });

  it('refuses a flipped byte behind a v5 CRC: superblock, AGF, bnobt block', async () => {
    const agfSpare = 512 + 100; // agf_spare64 of AG 0's AGF: covered by the CRC, read by nobody
    await expectRefused(flipped(pristine, agfSpare), /AGF of AG 0 fails its CRC/);
    await expectRefused(flipped(pristine, 300), /superblock fails its CRC/);
    const bnoRoot = new DataView(pristine.buffer, pristine.byteOffset).getUint32(512 + 16, false) * 4096;
    await expectRefused(flipped(pristine, bnoRoot + 60), /bnobt block \d+ of AG 0 fails its CRC/);
  });

  it('refuses free-space records that do not add up, even with the CRC re-sealed', async () => {
    const bytes = Uint8Array.from(pristine);
    const data = new DataView(bytes.buffer);
    const root = data.getUint32(512 + 16, false) * 4096;
    data.setUint32(root + 56 + 4, data.getUint32(root + 56 + 4, false) + 1, false); // first record one block longer
    reseal(bytes, root, 4096, 52);
    await expectRefused(bytes, /free blocks where the AGF counts|lists blocks .* as free, but block|overlapping|outside the AG/);
  });

  it('refuses a free extent over the AG headers on v4 (no CRC to catch it), and a bnobt root outside the AG', async () => {
    const bytes = Uint8Array.from(v4);
    const data = new DataView(bytes.buffer);
    const root = data.getUint32(512 + 16, false) * 4096;
    const [start, count] = [data.getUint32(root + 16, false), data.getUint32(root + 20, false)];
    data.setUint32(root + 16, 0, false);
    data.setUint32(root + 20, count + start, false);
    data.setUint32(512 + 52, data.getUint32(512 + 52, false) + start, false); // freeblks and longest follow
    data.setUint32(512 + 56, Math.max(data.getUint32(512 + 56, false), count + start), false);
    await expectRefused(bytes, /as free, but block 0 is in use|overlapping/);
    const outside = Uint8Array.from(v4);
    new DataView(outside.buffer).setUint32(512 + 16, 0xfffffff0, false);
    await expectRefused(outside, /bnobt root at block \d+, outside the AG/);
  });

  it('refuses a volume smaller than the filesystem, an unfinished mkfs and what is not XFS', async () => {
    await expectRefused(pristine.subarray(0, 32 * MiB), /the volume holds only/);
    const inProgress = Uint8Array.from(pristine);
    inProgress[126] = 1;
    reseal(inProgress, 0, 512, 224);
    await expectRefused(inProgress, /sb_inprogress/);
    await expectRefused(new Uint8Array(MiB), /no XFSB magic/);
  });
});
