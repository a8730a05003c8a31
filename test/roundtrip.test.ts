import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD,
  PASSWORD_ENV,
  allocatedBytes,
  backup,
  chunkHashes,
  expectCleanFsck,
  expectCleanFailure,
  expectSuccess,
  init,
  makeVolume,
  parseJson,
  restore,
  run,
  runCli,
  sameBytes,
  snapshots,
  tempDir,
  useSuiteScope,
  useTempDir,
  writeJob,
  imageDigestWithStandardTools,
  type TreeSpec,
} from './utils/index.js';


interface RoundTripCase {
  name: string;
  size: number;
  spec: TreeSpec;
  compression: Record<string, unknown>;
  chunkSize?: number;
}

const cases: RoundTripCase[] = [
  {
    name: '64 MiB ext4, zstd level 3, the default chunk size',
    size: 64 * MiB,
    spec: { seed: 1, randomBytes: 6 * MiB, textBytes: 4 * MiB, zeroBytes: 2 * MiB },
    compression: { type: 'zstd', level: 3 },
  },
  {
    name: '40 MiB + 12 KiB ext4 (a short last chunk), no compression, 64 KiB chunks',
    size: 40 * MiB + 12 * 1024,
    spec: { seed: 2, randomBytes: 3 * MiB, textBytes: 2 * MiB, zeroBytes: 1 * MiB, filesPerKind: 9 },
    compression: { type: 'none' },
    chunkSize: 64 * 1024,
  },
];

describe('round trip of a real ext4 image', () => {
  test.each(cases)('$name: restored image is byte-identical and passes e2fsck', async ({ size, spec, compression, chunkSize }) => {
    const dir = await useTempDir();
    const { image } = await makeVolume(dir, 'disk', size, spec);
    await expectCleanFsck(image); // the source image itself is clean
    const job = await writeJob(dir, { source: 'disk.img', compression, chunkSize });
    await init(job);

    const result = await backup(job);
    expect(result.snapshot).toMatch(/^[0-9a-f]{64}$/);
    expect(result.bytesRead).toBe(size); // mode "exact" reads every byte
    expect(result.size).toBe(size);
    // What a user compares a snapshot's digest with: standard tools over the image file.
    expect(result.imageDigest).toEqual({ algorithm: 'blake3-chunks', hex: await imageDigestWithStandardTools(image, chunkSize) });
    // Everything written to the volume is new; the random files cannot shrink.
    expect(result.bytesAdded).toBeGreaterThan(spec.randomBytes);
    if (compression.type === 'zstd') {
      expect(result.bytesAdded, 'text and zeros compress').toBeLessThan(spec.randomBytes + spec.textBytes);
    } else {
      expect(result.bytesAdded, 'stored as is: at least the files').toBeGreaterThan(spec.randomBytes + spec.textBytes);
    }

    const list = await snapshots(job);
    expect(Array.isArray(list)).toBe(true);
    expect(list).toHaveLength(1);
    expect(list[0]!.id).toBe(result.snapshot);
    expect(typeof list[0]!.time).toBe('string');
    expect(Math.abs(Date.parse(list[0]!.time) - Date.now())).toBeLessThan(10 * 60_000);

    const restored = join(dir, 'restored.img');
    const output = await restore(job, 'latest', restored);
    expect(output.stdout).toMatch(/blake3-chunks of the restored image verified/);
    expect(await imageDigestWithStandardTools(restored, chunkSize)).toBe(result.imageDigest.hex);
    expect(await sameBytes(image, restored)).toBe(true);
    await expectCleanFsck(restored);

    // A restore by id (or a unique prefix of it) gives the same bytes.
    const byPrefix = join(dir, 'by-prefix.img');
    await restore(job, result.snapshot.slice(0, 10), byPrefix);
    expect(await sameBytes(image, byPrefix)).toBe(true);
  });

  test('backup --json and snapshots --json are machine-readable', async () => {
    const dir = await useTempDir();
    const { image } = await makeVolume(dir, 'disk', 32 * MiB, { seed: 3, randomBytes: 1 * MiB, textBytes: 1 * MiB });
    const job = await writeJob(dir, { source: image });
    await init(job);

    const empty = await snapshots(job);
    expect(empty).toEqual([]);

    const first = await backup(job);
    const second = await backup(job);
    for (const summary of [first, second]) {
      expect(summary).toMatchObject({
        snapshot: expect.stringMatching(/^[0-9a-f]{64}$/),
        bytesRead: 32 * MiB,
        bytesAdded: expect.any(Number),
      });
    }
    expect(second.snapshot).not.toBe(first.snapshot);

    const list = await snapshots(job);
    expect(list.map((s) => s.id).sort()).toEqual([first.snapshot, second.snapshot].sort());
    for (const row of list) {
      expect(row.id).toMatch(/^[0-9a-f]{64}$/);
      expect(row.imageDigest).toEqual(first.imageDigest);
      expect(Number.isNaN(Date.parse(row.time))).toBe(false);
      expect(row.size).toBe(32 * MiB);
    }

    // Piped (not a terminal) and without --json: a plain summary, no progress bar noise.
    const plain = await runCli(['backup', job], { env: PASSWORD_ENV });
    expectSuccess(plain);
    expect(plain.stdout).toMatch(/^Snapshot [0-9a-f]{12} saved/);
    expect(plain.stderr).toBe('');
  });

  test('the restored image of a mostly empty volume is sparse', async () => {
    const dir = await useTempDir();
    const size = 512 * MiB;
    const { image } = await makeVolume(dir, 'sparse', size, { seed: 4, randomBytes: 2 * MiB, textBytes: 512 * 1024 });
    const job = await writeJob(dir, { source: image });
    await init(job);
    const result = await backup(job);
    expect(result.chunks.zero).toBeGreaterThan(result.chunks.data);

    const restored = join(dir, 'restored.img');
    await restore(job, 'latest', restored);
    expect(await sameBytes(image, restored)).toBe(true);

    const chunkSize = size / (result.chunks.data + result.chunks.zero + result.chunks.unused);
    const nonZeroChunks = (await chunkHashes(image, chunkSize)).filter((h) => h !== null).length;
    const allocated = await allocatedBytes(restored);
    expect(allocated, `allocated ${allocated} of ${size}`).toBeLessThan(size / 4);
    // Only the chunks holding data were written; every all-zero chunk stayed a hole (the
    // slack is the host filesystem's own extent-tree blocks).
    expect(allocated).toBeLessThanOrEqual(nonZeroChunks * chunkSize + 64 * 1024);
  });

  test('restore onto an existing file needs --force', async () => {
    const dir = await useTempDir();
    const { image } = await makeVolume(dir, 'disk', 32 * MiB, { seed: 5, randomBytes: 1 * MiB, textBytes: 256 * 1024 });
    const job = await writeJob(dir, { source: image });
    await init(job);
    await backup(job);

    const existing = join(dir, 'existing.img');
    await writeFile(existing, 'precious data that must survive a restore without --force\n');
    const refused = await runCli(['restore', job, 'latest', '--to', existing], { env: PASSWORD_ENV });
    expectCleanFailure(refused, 1, /already exists/, /--force/, new RegExp(existing.replaceAll('/', '\\/')));
    expect(await readFile(existing, 'utf8')).toMatch(/^precious data/);

    const forced = await runCli(['restore', job, 'latest', '--to', existing, '--force'], { env: PASSWORD_ENV });
    expectSuccess(forced);
    expect(await sameBytes(image, existing)).toBe(true);
    await expectCleanFsck(existing);
  });
});

describe('passwords', () => {
  const scope = useSuiteScope();
  let dir: string;
  let job: string;
  let snapshotId: string;

  beforeAll(async () => {
    dir = await tempDir(scope);
    const { image } = await makeVolume(dir, 'disk', 32 * MiB, { seed: 6, randomBytes: 512 * 1024, textBytes: 512 * 1024 });
    job = await writeJob(dir, { source: image });
    await init(job);
    snapshotId = (await backup(job)).snapshot;
  });

  test('a second password added with key add --new-password-env opens the repository', async () => {
    const added = await runCli(['key', 'add', job, '--new-password-env', 'CAIRN_NEW_PASSWORD', '--json'], {
      env: { ...PASSWORD_ENV, CAIRN_NEW_PASSWORD: 'a second, different password' },
    });
    expectSuccess(added);
    expect(parseJson<{ id: string }>(added).id).toMatch(/^[0-9a-f]{64}$/);

    const keys = parseJson<Array<{ id: string }>>(await runCli(['key', 'list', job, '--json'], { env: PASSWORD_ENV }));
    expect(keys).toHaveLength(2);

    const withNew = await runCli(['snapshots', job, '--json'], { env: { CAIRN_PASSWORD: 'a second, different password' } });
    expectSuccess(withNew);
    expect(parseJson<Array<{ id: string }>>(withNew).map((s) => s.id)).toEqual([snapshotId]);
    // The first password still works, and the new one restores.
    const withOld = await runCli(['snapshots', job, '--json'], { env: PASSWORD_ENV });
    expectSuccess(withOld);
    const restored = join(dir, 'with-new-password.img');
    await restore(job, 'latest', restored, { env: { CAIRN_PASSWORD: 'a second, different password' } });
    expect(await sameBytes(join(dir, 'disk.img'), restored)).toBe(true);
  });

  test('the password can come from a file', async () => {
    await writeFile(join(dir, 'pwfile'), PASSWORD + '\n', { mode: 0o600 });
    const fileJob = await writeJob(dir, { source: 'disk.img', password: { file: 'pwfile' } }, 'job-file.json');
    const result = await runCli(['snapshots', fileJob, '--json'], { env: {} });
    expectSuccess(result);
    expect(parseJson<Array<{ id: string }>>(result).map((s) => s.id)).toEqual([snapshotId]);
  });

  test('the password can come from a command', async () => {
    await writeFile(join(dir, 'pwfile'), PASSWORD + '\n', { mode: 0o600 });
    const commandJob = await writeJob(dir, { source: 'disk.img', password: { command: ['cat', 'pwfile'] } }, 'job-command.json');
    const result = await runCli(['snapshots', commandJob, '--json'], { env: {} });
    expectSuccess(result);
    expect(parseJson<Array<{ id: string }>>(result).map((s) => s.id)).toEqual([snapshotId]);

    const wrongJob = await writeJob(dir, { source: 'disk.img', password: { command: ['echo', 'not the password'] } }, 'job-wrong-command.json');
    expectCleanFailure(await runCli(['snapshots', wrongJob], { env: {} }), 12, /wrong password/i);

    const failingJob = await writeJob(dir, { source: 'disk.img', password: { command: ['false'] } }, 'job-failing-command.json');
    expectCleanFailure(await runCli(['snapshots', failingJob], { env: {} }), 2, /password command false exited with 1/);
  });
});
