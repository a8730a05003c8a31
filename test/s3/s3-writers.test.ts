// Several writers and killed writers on one S3 repository, against a real Ceph RGW on 127.0.0.1:
// prune aborts the multipart uploads a killed backup left once they are an hour old (and not
// before), and two backups of different volumes run into one repository at once while `check`
// runs over and over beside them.
import { randomUUID } from 'node:crypto';
import { copyFile, mkdtemp, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBucket, openS3Target, type S3Target } from '@cairn/target-s3/testing';
import {
  MiB,
  PASSWORD_ENV,
  REPO_ROOT,
  expectSuccess,
  parseJson,
  randomBytesFor,
  runCli,
  sameBytes,
  startCli,
  tempDir,
  useSuiteScope,
  writePluginsFile,
  type CliOptions,
  type CliResult,
} from '../utils/index.js';
import { cephAvailable, startCeph, type S3Server } from './servers.js';

const BUCKET = 'cairn-writers';
/** Preloaded into a CLI run: cairn's clock stands at CAIRN_E2E_CLOCK_AT (see the file). */
const FROZEN_CLOCK = join(REPO_ROOT, 'test/fixtures/clock/register.mjs');
const HOUR = 3_600_000;

const scope = useSuiteScope();
let work: string;
let pluginsFile: string;
let server: S3Server;

// setup.sh installs Ceph; a machine without it fails here loudly unless told to skip on purpose.
const available = process.env.CAIRN_SKIP_CEPH !== '1' || cephAvailable();

function cliOptions(extra: Partial<CliOptions> = {}, env: Record<string, string> = {}): CliOptions {
  return { plugins: pluginsFile, timeoutMs: 180_000, ...extra, env: { ...PASSWORD_ENV, TEST_S3_KEY: server.credentials.accessKeyId, ...env } };
}

async function cairnOk(args: string[], extra: Partial<CliOptions> = {}, env: Record<string, string> = {}): Promise<CliResult> {
  const result = await runCli(args, cliOptions(extra, env));
  expectSuccess(result);
  return result;
}

/** A job backing up `volume` (a raw image file) into the repository at `prefix` of the bucket. */
async function writeS3Job(dir: string, name: string, volume: string, prefix: string, target: Record<string, unknown> = {}): Promise<string> {
  const job = {
    name,
    source: { type: 'volume', path: volume, mode: 'exact' },
    compression: { type: 'zstd', level: 1 },
    target: {
      type: 's3',
      endpoint: server.endpoint,
      bucket: BUCKET,
      prefix,
      credentials: { accessKeyId: { env: 'TEST_S3_KEY' }, secretAccessKey: { file: 's3.secret' } },
      ...target,
    },
    password: { env: 'CAIRN_PASSWORD' },
  };
  await writeFile(join(dir, 's3.secret'), `${server.credentials.secretAccessKey}\n`, { mode: 0o600 });
  const path = join(dir, `${name}.json`);
  await writeFile(path, JSON.stringify(job, null, 2));
  return path;
}

/** A raw volume made of the given parts, each `seed`-determined random bytes. */
async function writeVolume(path: string, parts: Array<{ seed: string; bytes: number }>): Promise<void> {
  const handle = await open(path, 'w');
  try {
    for (const { seed, bytes } of parts) await handle.write(randomBytesFor(seed, bytes));
  } finally {
    await handle.close();
  }
}

async function uploadKeys(target: S3Target): Promise<string[]> {
  return (await target.listIncompleteUploads()).map((u) => u.key.slice(target.settings.root.length)).sort();
}

interface PruneJson {
  packs: { stored: number; unused: number; orphans: number; repacked: number; kept: number };
  bytesDeleted: number;
  staleLocksRemoved: number;
  leftoversRemoved: number;
}

describe.skipIf(!available)('writers on one S3 repository (Ceph RGW)', () => {
  beforeAll(async () => {
    work = await tempDir(scope, 'cairn-s3-writers-');
    pluginsFile = await writePluginsFile(work, [join(REPO_ROOT, 'packages/target-s3')]);
    server = await startCeph();
    await createBucket(server.endpoint, BUCKET, server.credentials);
  }, 90_000);

  afterAll(async () => {
    await server?.stop();
  });

  it('prune keeps the multipart uploads of a killed backup while they are younger than an hour, and aborts them once older; a later one stays', { timeout: 240_000 }, async () => {
    const dir = await mkdtemp(join(work, 'killed-'));
    const prefix = `killed/${randomUUID()}`;
    const volume = join(dir, 'volume.img');
    await writeVolume(volume, [{ seed: 'killed-base', bytes: 96 * MiB }]);
    // Packs (16 MiB) go up in 5 MiB parts, so a backup killed mid-upload leaves unfinished uploads.
    const job = await writeS3Job(dir, 'killed', volume, prefix, { multipartThresholdMiB: 5, partSizeMiB: 5 });
    await cairnOk(['init', job]);
    const first = parseJson<{ snapshot: string }>(await cairnOk(['backup', job, '--json']));
    await copyFile(volume, join(dir, 'first.img'));
    await writeVolume(volume, [{ seed: 'killed-changed', bytes: 96 * MiB }]);

    const probe = await openS3Target({ endpoint: server.endpoint, bucket: BUCKET, prefix }, server.credentials);
    try {
      // One started by hand, as another writer's would be.
      await probe.client.send(new probe.sdk.CreateMultipartUploadCommand({ Bucket: BUCKET, Key: `${prefix}/data/00/by-hand` }));
      const running = startCli(['backup', job], cliOptions());
      let exited: CliResult | undefined;
      void running.result.then((r) => (exited = r));
      for (const deadline = Date.now() + 60_000; (await probe.listIncompleteUploads()).length < 2; await sleep(20)) {
        if (exited) throw new Error(`the backup ended before it started a multipart upload: ${exited.stderr}`);
        if (Date.now() > deadline) throw new Error('the backup started no multipart upload within 60 s');
      }
      running.child.kill('SIGKILL');
      expect((await running.result).signal).toBe('SIGKILL');
      const left = await uploadKeys(probe);
      expect(left.length).toBeGreaterThanOrEqual(2);
      expect(left.filter((key) => key !== 'data/00/by-hand').every((key) => /^data\/[0-9a-f]{2}\/[0-9a-f]{64}$/.test(key)), left.join(', ')).toBe(true);

      // The server stamps Initiated in whole seconds: the cutoff stays well clear of both sides.
      await sleep(1500);
      const cutoff = Date.now();
      await sleep(1500);
      await probe.client.send(new probe.sdk.CreateMultipartUploadCommand({ Bucket: BUCKET, Key: `${prefix}/data/ff/later` }));

      // Now: everything is younger than an hour and may belong to a writer still at work.
      const now = parseJson<PruneJson>(await cairnOk(['prune', job, '--json']));
      expect(now.leftoversRemoved).toBe(0);
      expect(await uploadKeys(probe)).toEqual([...left, 'data/ff/later'].sort());

      // An hour after the cutoff by cairn's clock: those started before it are aborted, the later one stays.
      const later = parseJson<PruneJson>(await cairnOk(['prune', job, '--json'], { nodeArgs: ['--import', FROZEN_CLOCK] }, { CAIRN_E2E_CLOCK_AT: String(cutoff + HOUR) }));
      expect(later.leftoversRemoved).toBe(left.length);
      expect(await uploadKeys(probe)).toEqual(['data/ff/later']);
    } finally {
      await probe.dispose();
    }

    const check = parseJson<{ problems: unknown[] }>(await cairnOk(['check', job, '--read-data', '--json']));
    expect(check.problems).toEqual([]);
    await cairnOk(['restore', job, first.snapshot, '--to', join(dir, 'first-restored.img')]);
    expect(await sameBytes(join(dir, 'first.img'), join(dir, 'first-restored.img'))).toBe(true);
    await cairnOk(['backup', job]);
    await cairnOk(['restore', job, 'latest', '--to', join(dir, 'latest-restored.img')]);
    expect(await sameBytes(volume, join(dir, 'latest-restored.img'))).toBe(true);
  });
  it('two backups of different volumes that share half their data run into one repository at once: both succeed and restore identical, and check never reports damage meanwhile', { timeout: 300_000 }, async () => {
    const dir = await mkdtemp(join(work, 'concurrent-'));
    const prefix = `concurrent/${randomUUID()}`;
    const half = 128 * MiB;
    // Chunks are 4 MiB and aligned: the shared half is the same chunks in both. A reads it first, B last,
    // so that B could find it in A's index files if they arrive in time (backups take in others' every 10 s).
    const volumes = { a: join(dir, 'a.img'), b: join(dir, 'b.img') };
    await writeVolume(volumes.a, [{ seed: 'shared', bytes: half }, { seed: 'only-a', bytes: half }]);
    await writeVolume(volumes.b, [{ seed: 'only-b', bytes: half }, { seed: 'shared', bytes: half }]);
    const jobs = { a: await writeS3Job(dir, 'writer-a', volumes.a, prefix), b: await writeS3Job(dir, 'writer-b', volumes.b, prefix) };
    await cairnOk(['init', jobs.a]);

    const started = Date.now();
    const runs = (['a', 'b'] as const).map((name) => {
      const running = startCli(['backup', jobs[name], '--json'], cliOptions());
      return { name, running, result: running.result.then((result) => ({ result, endedMs: Date.now() - started })) };
    });
    let writing = 2;
    for (const run of runs) void run.result.then(() => writing--);
    // check, over and over (two at a time) while the backups write: never a problem, never a non-zero exit.
    const checks: Array<{ startedMs: number; endedMs: number; exitCode: number | null; problems: unknown[]; unreferencedPacks: number }> = [];
    const checkLoop = async () => {
      while (writing > 0) {
        const startedMs = Date.now() - started;
        const result = await runCli(['check', jobs.a, '--json'], cliOptions());
        const json = parseJson<{ problems: unknown[]; unreferencedPacks: unknown[] }>(result);
        checks.push({ startedMs, endedMs: Date.now() - started, exitCode: result.exitCode, problems: json.problems, unreferencedPacks: json.unreferencedPacks.length });
      }
    };
    await Promise.all([checkLoop(), checkLoop()]);
    const ended = await Promise.all(runs.map((run) => run.result));
    for (const { result } of ended) expectSuccess(result);
    const summaries = ended.map(({ result }) => parseJson<{ snapshot: string; size: number; bytesAdded: number; durationMs: number }>(result));
    const lastStart = Math.max(...checks.map((c) => c.startedMs));
    checks.sort((x, y) => x.startedMs - y.startedMs);
    expect(checks.filter((c) => c.startedMs < Math.min(...ended.map((e) => e.endedMs))).length, 'checks that started while both backups ran').toBeGreaterThanOrEqual(3);
    expect(checks.map((c) => [c.exitCode, c.problems])).toEqual(checks.map(() => [0, []]));
    console.log(
      `[s3 concurrent writers] ${(['a', 'b'] as const).map((name, i) => `${name}: ${summaries[i]!.size / MiB} MiB, added ${(summaries[i]!.bytesAdded / MiB).toFixed(1)} MiB in ${summaries[i]!.durationMs} ms (ended at ${ended[i]!.endedMs} ms)`).join('; ')}; ` +
        `${checks.length} checks, all exit 0 with no problems (started at ${checks.map((c) => c.startedMs).join(', ')} ms, the last at ${lastStart} ms; unreferenced packs each saw: ${checks.map((c) => c.unreferencedPacks).join(', ')})`,
    );

    const listed = parseJson<Array<{ id: string }>>(await cairnOk(['snapshots', jobs.a, '--json']));
    expect(listed.map((s) => s.id).sort()).toEqual(summaries.map((s) => s.snapshot).sort());
    for (const [i, name] of (['a', 'b'] as const).entries()) {
      const restored = join(dir, `${name}-restored.img`);
      await cairnOk(['restore', jobs[name], summaries[i]!.snapshot, '--to', restored]);
      expect(await sameBytes(volumes[name], restored), `${name} restores identical`).toBe(true);
    }
    const check = parseJson<{ problems: unknown[]; unreferencedPacks: unknown[] }>(await cairnOk(['check', jobs.b, '--read-data', '--json']));
    expect(check.problems).toEqual([]);
    expect(check.unreferencedPacks).toEqual([]);
    // Each volume's own half is stored once, so together they added at least three halves; the shared half
    // is stored once or twice, depending on whether B saw A's index files in time (not guaranteed).
    const added = summaries.reduce((n, s) => n + s.bytesAdded, 0);
    expect(added).toBeGreaterThanOrEqual(3 * half);
    expect(added).toBeLessThan(4 * half + 4 * MiB);
  });
});
