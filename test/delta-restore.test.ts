// Delta restore: taking an image file or a block device back to a snapshot reads what it holds
// first and fetches and writes only the chunks that differ. Checked with real ext4 images, a
// real loop device and b3sum, against the chunks the test itself changed.
import { copyFile, open, readFile, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  allocatedBytes,
  attachLoop,
  backup,
  expectCleanFsck,
  expectSuccess,
  imageDigestWithStandardTools,
  init,
  makeVolume,
  parseJson,
  pseudoRandomBytes,
  run,
  runCli,
  sameBytes,
  useScope,
  useSuiteScope,
  tempDir,
  writeJob,
  type BackupSummary,
} from './utils/index.js';

const SIZE = 48 * MiB;
const CHUNK = 1 * MiB;
/** The chunks the "bad update" overwrites: whole ones, and one only in part (it still counts whole). */
const CHANGED = [{ chunk: 3, bytes: CHUNK }, { chunk: 20, bytes: 4096 }, { chunk: 41, bytes: CHUNK }];

interface RestoreJson {
  bytesWritten: number;
  bytesFetched: number;
  bytesUnchanged?: number;
  bytesLeftUnused?: number;
  bytesZeroed?: number;
  delta: boolean;
  imageDigest?: { algorithm: string; hex: string };
}

/** The snapshot's image digest as standard tools compute it from the destination. */
async function b3sum(path: string): Promise<string> {
  return imageDigestWithStandardTools(path, CHUNK);
}

/** The index of the first chunk of `image` that is all zeros (free space the snapshot holds no data for). */
async function firstZeroChunk(image: string): Promise<number> {
  const bytes = await readFile(image);
  for (let chunk = 0; chunk * CHUNK < bytes.length; chunk++) {
    if (bytes.subarray(chunk * CHUNK, (chunk + 1) * CHUNK).every((b) => b === 0)) return chunk;
  }
  throw new Error(`${image} has no chunk of zeros`);
}

/** A copy of `image` with the CHANGED ranges overwritten: the machine after a bad update. */
async function changedCopy(image: string, to: string, seed: number): Promise<void> {
  await copyFile(image, to);
  const handle = await open(to, 'r+');
  try {
    for (const [k, { chunk, bytes }] of CHANGED.entries()) await handle.write(pseudoRandomBytes(bytes, seed + k), 0, bytes, chunk * CHUNK);
  } finally {
    await handle.close();
  }
}

async function restoreJson(job: string, to: string, extra: string[] = []): Promise<RestoreJson> {
  const result = await runCli(['restore', job, 'latest', '--to', to, '--force', '--json', ...extra], { env: PASSWORD_ENV });
  expectSuccess(result);
  return parseJson<RestoreJson>(result);
}

describe('delta restore onto an existing image or device', () => {
  let dir: string;
  let image: string;
  let job: string;
  let made: BackupSummary;
  const suite = useSuiteScope();

  beforeAll(async () => {
    dir = await tempDir(suite);
    ({ image } = await makeVolume(dir, 'disk', SIZE, { seed: 7, randomBytes: 20 * MiB, textBytes: 4 * MiB, zeroBytes: 2 * MiB }));
    job = await writeJob(dir, { source: 'disk.img', chunkSize: CHUNK, extra: { source: { type: 'volume', path: 'disk.img', mode: 'used' } } });
    await init(job);
    made = await backup(job);
  });

  test('an image file: only the changed chunks are fetched and written, in place, and the whole image is verified', async () => {
    const target = join(dir, 'after-update.img');
    await changedCopy(image, target, 100);
    const inode = (await stat(target)).ino;

    const json = await restoreJson(job, target);
    expect(json.delta).toBe(true);
    // Data chunks are compared and the changed ones written; zero and unused chunks are made
    // zeros in place without a look; together that is the whole image.
    const dataChunks = (made.chunks.data) * CHUNK;
    expect(json.bytesWritten).toBeLessThanOrEqual(CHANGED.length * CHUNK);
    expect(json.bytesUnchanged).toBe(dataChunks - json.bytesWritten);
    expect(json.bytesZeroed).toBe(SIZE - dataChunks);
    expect(await b3sum(target)).toBe(made.imageDigest.hex);
    // Each changed chunk costs at most its blob (random data: about the chunk) and the seal.
    expect(json.bytesFetched).toBeLessThanOrEqual(1.1 * CHANGED.length * CHUNK);
    expect(json.imageDigest).toEqual(made.imageDigest);
    expect((await stat(target)).ino, 'written in place').toBe(inode);
    await expectCleanFsck(target);

    // Already the snapshot's image: nothing to fetch or write.
    const again = await restoreJson(job, target);
    expect(again).toMatchObject({ delta: true, bytesWritten: 0, bytesFetched: 0, bytesUnchanged: dataChunks });
  });

  test('zeros are made in place without writing or allocating: stale data in free space reads as zeros, holes stay holes', async () => {
    const target = join(dir, 'stale-free-space.img');
    await run('cp', ['--sparse=always', image, target]);
    const stale = await firstZeroChunk(image);
    const handle = await open(target, 'r+');
    await handle.write(pseudoRandomBytes(CHUNK, 400), 0, CHUNK, stale * CHUNK);
    await handle.close();
    const allocatedBefore = await allocatedBytes(target);
    expect(allocatedBefore, 'the copy has holes beside the stale chunk').toBeLessThanOrEqual(SIZE - 4 * CHUNK);

    const json = await restoreJson(job, target);
    expect(json).toMatchObject({ delta: true, bytesWritten: 0, bytesFetched: 0, bytesZeroed: SIZE - made.chunks.data * CHUNK });
    expect(await b3sum(target)).toBe(made.imageDigest.hex);
    // Give or take an extent tree block: unwritten extents split the written ones.
    expect(await allocatedBytes(target), 'nothing allocated where the file had holes').toBeLessThanOrEqual(allocatedBefore + 64 * 1024);
  });

  test('--no-delta writes the whole image under a temporary name and replaces the file', async () => {
    const target = join(dir, 'no-delta.img');
    await changedCopy(image, target, 200);
    const inode = (await stat(target)).ino;
    const json = await restoreJson(job, target, ['--no-delta']);
    expect(json.delta).toBe(false);
    expect(json.bytesUnchanged).toBeUndefined();
    expect(json.bytesFetched).toBeGreaterThan(10 * MiB);
    expect((await stat(target)).ino, 'replaced').not.toBe(inode);
    expect(await b3sum(target)).toBe(made.imageDigest.hex);
  });

  test('an existing file of another size is replaced whole, not compared', async () => {
    const target = join(dir, 'other-size.img');
    await changedCopy(image, target, 300);
    await truncate(target, SIZE + CHUNK);
    const json = await restoreJson(job, target);
    expect(json.delta).toBe(false);
    expect(await b3sum(target)).toBe(made.imageDigest.hex);
  });

  test('a block device: compared and patched; unused blocks keep old bytes unless --zero-unused, and the message says so', async () => {
    const backing = join(dir, 'device.img');
    await changedCopy(image, backing, 400);
    // Stale bytes in a chunk the snapshot does not use (free space of the ext4): left alone without --zero-unused.
    const shown = parseJson<{ layout: { mode: string } }>(await runCli(['show', job, 'latest', '--json'], { env: PASSWORD_ENV }));
    expect(shown.layout.mode).toBe('used');
    const device = await attachLoop(useScope(), backing);

    const first = await runCli(['restore', job, 'latest', '--to', device, '--force'], { env: PASSWORD_ENV });
    expectSuccess(first);
    expect(first.stdout).toMatch(/already there \(delta\)/);
    expect(first.stdout).toMatch(/unused blocks counted as zeros: the device keeps its old bytes there/);

    const json = await restoreJson(job, device);
    expect(json.delta).toBe(true);
    expect(json.bytesWritten).toBe(0);
    expect(json.bytesFetched).toBe(0);
    await expectCleanFsck(device);

    const zeroed = await restoreJson(job, device, ['--zero-unused']);
    expect(zeroed.bytesLeftUnused).toBeUndefined();
    expect(await b3sum(device)).toBe(made.imageDigest.hex);
    expect(await sameBytes(device, image), 'the source image again: its free space was zeros').toBe(true);
  });
});
