import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  backup,
  describeWithLoopDevices,
  escapeRegExp,
  expectCleanFailure,
  expectSuccess,
  imageDigestWithStandardTools,
  init,
  makeVolume,
  mountFaultyImage,
  parseJson,
  run,
  runCli,
  tempDir,
  useScope,
  useSuiteScope,
  writeJob,
  type FaultyImageOptions,
} from './utils/index.js';

/*
 * Unreadable sectors of the source, served by a FUSE file system (test/fixtures/faulty-fuse)
 * that fails reads of chosen byte ranges with EIO: a failing disk as the backup sees it.
 * By default the backup stops cleanly; `--rescue` images around the unreadable pieces.
 */

const PAGE = 4096;
const SIZE = 16 * MiB;

/** The 4 KiB pages a range touches: the backup narrows a failed read down to these. */
function pagesOf({ offset, length }: { offset: number; length: number }): { offset: number; length: number } {
  const start = Math.floor(offset / PAGE) * PAGE;
  return { offset: start, length: Math.ceil((offset + length) / PAGE) * PAGE - start };
}

describeWithLoopDevices('unreadable source sectors', () => {
  const scope = useSuiteScope();
  let dir: string;
  let image: string;
  let repository: string;
  let baseline: string;
  let mounts = 0;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-source-faults-');
    ({ image } = await makeVolume(dir, 'disk', SIZE, { seed: 71, randomBytes: 6 * MiB, textBytes: 2 * MiB }));
    repository = join(dir, 'repo');
    const plain = await writeJob(dir, { source: image });
    await init(plain);
    baseline = (await backup(plain)).snapshot;
  });

  /**
   * The image served with faults, and a job in a folder of its own that backs it up into the
   * shared repository, with an after hook that leaves a line in hooks.log.
   */
  async function faultyJob(options: FaultyImageOptions): Promise<{ job: string; folder: string; source: string }> {
    const folder = join(dir, `run-${++mounts}`);
    await mkdir(folder);
    const source = await mountFaultyImage(useScope(), image, join(folder, 'mnt'), options);
    const job = await writeJob(folder, { source, repository: '../repo', extra: { hooks: { after: [['sh', '-c', 'echo after >> hooks.log']] } } });
    return { job, folder, source };
  }

  const hookLog = async (folder: string) => (await readFile(join(folder, 'hooks.log'), 'utf8')).split('\n').filter(Boolean);
  const snapshotFiles = async () => (await readdir(join(repository, 'snapshots'))).sort();
  const cairn = (args: string[]) => runCli(args, { env: PASSWORD_ENV });

  /** What a failed run must leave: the after hook ran once, no lock, no new snapshot. */
  async function expectCleanAbort(folder: string, snapshotsBefore: string[]): Promise<void> {
    expect(await hookLog(folder)).toEqual(['after']);
    expect(await readdir(join(repository, 'locks'))).toEqual([]);
    expect(await snapshotFiles()).toEqual(snapshotsBefore);
  }

  test('by default an unreadable range stops the backup with one line naming the file and offset; the after hook runs and the lock is released', async () => {
    const bad = { offset: 5 * MiB + 12 * 1024, length: PAGE };
    const { job, folder, source } = await faultyJob({ bad: [bad, { offset: 9 * MiB, length: PAGE }] });
    const before = await snapshotFiles();
    const result = await cairn(['backup', job]);
    expectCleanFailure(result, 1, new RegExp(`^cairn: ${escapeRegExp(`Cannot read ${source} at offset ${bad.offset} (length 4096): EIO (input/output error)`)}$`, 'm'));
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    await expectCleanAbort(folder, before);

    const json = await cairn(['backup', job, '--json']);
    expect(json.exitCode).toBe(1);
    expect(JSON.parse(json.stderr)).toEqual({ error: { code: 'CAIRN_SOURCE_UNREADABLE', message: `Cannot read ${source} at offset ${bad.offset} (length 4096): EIO (input/output error)` } });
    expect(await readdir(join(repository, 'locks'))).toEqual([]);
  });

  test('an unreadable first sector is reported the same way', async () => {
    const { job, folder, source } = await faultyJob({ bad: [{ offset: 0, length: 512 }] });
    const before = await snapshotFiles();
    expectCleanFailure(await cairn(['backup', job]), 1, new RegExp(escapeRegExp(`Cannot read ${source} at offset 0 `)), /EIO \(input\/output error\)/);
    await expectCleanAbort(folder, before);
  });

  test('a source truncated while it is read stops the backup cleanly, with --rescue too: it is not an unreadable range', async () => {
    const endsAt = 11 * MiB + 5000;
    const { job, folder, source } = await faultyJob({ endsAt });
    const before = await snapshotFiles();
    for (const args of [[], ['--rescue']]) {
      const result = await cairn(['backup', job, ...args]);
      expectCleanFailure(result, 1, new RegExp(escapeRegExp(`Cannot read ${source} at offset ${endsAt} `)), /the volume ends there/, /did it shrink/);
    }
    expect(await hookLog(folder)).toEqual(['after', 'after']);
    expect(await readdir(join(repository, 'locks'))).toEqual([]);
    expect(await snapshotFiles()).toEqual(before);
  });

  test('--rescue images the rest: exit 3, the ranges in the warning, in --json and in show; a restore writes zeros there and says so', async () => {
    // An aligned page, a range over three pages from the middle of one, and two touching ones that merge.
    const bad = [
      { offset: 3 * MiB, length: PAGE },
      { offset: 7 * MiB - 2048, length: 8192 },
      { offset: 12 * MiB, length: 3000 },
      { offset: 12 * MiB + PAGE, length: 100 },
    ];
    const unreadable = [pagesOf(bad[0]!), pagesOf(bad[1]!), { offset: 12 * MiB, length: 2 * PAGE }];
    const total = unreadable.reduce((sum, r) => sum + r.length, 0);
    const { job, folder, source } = await faultyJob({ bad });

    const result = await cairn(['backup', job, '--rescue', '--json']);
    expect(result.exitCode, result.stderr).toBe(3);
    const summary = parseJson(result);
    expect(summary.unreadable).toEqual(unreadable);
    expect(result.stderr).toBe(
      `cairn: warning: 3 range(s) of ${source} could not be read (${total} bytes in all) and were stored as zeros: ` +
        `${unreadable.map((r) => `${r.length} bytes at offset ${r.offset}`).join(', ')}; \`cairn show\` lists them all\n`,
    );
    expect(await hookLog(folder)).toEqual(['after']);
    expect(await readdir(join(repository, 'locks'))).toEqual([]);

    // The text form says the snapshot is incomplete.
    const text = await cairn(['backup', job, '--rescue']);
    expect(text.exitCode).toBe(3);
    expect(text.stdout).toMatch(new RegExp(`^Snapshot [0-9a-f]{12} saved incomplete \\(${total / 1024}\\.0 KiB in 3 unreadable range\\(s\\) stored as zeros\\)`));

    const shown = await cairn(['show', job, summary.snapshot]);
    expectSuccess(shown);
    expect(shown.stdout).toContain(`unreadable 3 range(s) of the source, ${total / 1024}.0 KiB (${total} bytes) in all, stored as zeros:\n  OFFSET         LENGTH\n`);
    for (const r of unreadable) expect(shown.stdout).toMatch(new RegExp(`^  ${r.offset} +${r.length}$`, 'm'));
    expect(parseJson(await cairn(['show', job, summary.snapshot, '--json'])).unreadable).toEqual(unreadable);
    expectSuccess(await cairn(['check', job, '--read-data']));

    // The restored image is the source with zeros for the unreadable pages, and its digest is the snapshot's.
    const to = join(folder, 'restored.img');
    const restored = await cairn(['restore', job, summary.snapshot, '--to', to, '--json']);
    expectSuccess(restored);
    expect(parseJson(restored).unreadable).toEqual(unreadable);
    expect(restored.stderr).toBe(
      `cairn: warning: zeros stand in for 3 range(s) of ${to} (${total} bytes in all) that the backup could not read from its source: ` +
        `${unreadable.map((r) => `${r.length} bytes at offset ${r.offset}`).join(', ')}\n`,
    );
    const expected = await readFile(image);
    for (const r of unreadable) expected.fill(0, r.offset, r.offset + r.length);
    expect((await readFile(to)).equals(expected)).toBe(true);
    expect(await imageDigestWithStandardTools(to)).toBe(summary.imageDigest.hex);

    // A snapshot read in full says nothing of the kind.
    const full = await cairn(['restore', job, baseline, '--to', join(folder, 'full.img')]);
    expectSuccess(full);
    expect(full.stderr).toBe('');
  });

  test('--rescue on a source with nothing unreadable is an ordinary backup (exit 0)', async () => {
    const { job } = await faultyJob({});
    const result = await cairn(['backup', job, '--rescue', '--json']);
    expectSuccess(result);
    expect(parseJson(result)).not.toHaveProperty('unreadable');
    expect(result.stderr).toBe('');
  });
});
