import { readdir, readFile, stat } from 'node:fs/promises';
import { hostname, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  REPO_ROOT,
  chunkHashes,
  expectSuccess,
  imageDigestWithStandardTools,
  flipByte,
  listPacks,
  makeVolume,
  parseJson,
  readRepositoryConfig,
  run,
  runCli,
  sameBytes,
  tempDir,
  treeBytes,
  useSuiteScope,
  writeJob,
  type CliResult,
} from './utils/index.js';

/*
 * Every `--json` shape, field by field: the exact set of keys, the type of each value, and
 * the values checked against each other and against what is on disk. Scripts parse these;
 * a renamed or dropped field breaks them as surely as a wrong value.
 */

const HEX64 = /^[0-9a-f]{64}$/;
const SIZE = 32 * MiB;

/** Asserts `value` is a plain object with exactly these keys. */
function expectKeys(value: unknown, keys: readonly string[]): void {
  expect(value).toBeTypeOf('object');
  expect(value).not.toBeNull();
  expect(Array.isArray(value)).toBe(false);
  expect(Object.keys(value as object).sort()).toEqual([...keys].sort());
}

/** An ISO 8601 time as `Date#toISOString` writes it, within [from, to]. */
function expectIsoTimeWithin(value: unknown, from: number, to: number): void {
  expect(value).toBeTypeOf('string');
  expect(new Date(value as string).toISOString()).toBe(value);
  expect(Date.parse(value as string)).toBeGreaterThanOrEqual(from);
  expect(Date.parse(value as string)).toBeLessThanOrEqual(to);
}

function expectCount(value: unknown): void {
  expect(Number.isSafeInteger(value), `${value} is a count`).toBe(true);
  expect(value as number).toBeGreaterThanOrEqual(0);
}

/** A CLI run with the time it started and ended, for checking the times it reports. */
async function timed(args: string[], options: Parameters<typeof runCli>[1] = {}): Promise<{ result: CliResult; started: number; ended: number }> {
  const started = Date.now();
  const result = await runCli(args, { env: PASSWORD_ENV, ...options });
  const ended = Date.now();
  return { result, started, ended };
}


describe('--json output of every command', () => {
  const scope = useSuiteScope();
  let dir: string;
  let image: string;
  let job: string;
  let repository: string;
  let chunkSize: number;
  const backups: Array<{ json: any; started: number; ended: number; repositoryGrowth: number }> = [];
  let initJson: any;
  let initWindow: [number, number];

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-json-');
    ({ image } = await makeVolume(dir, 'disk', SIZE, { seed: 91, randomBytes: 3 * MiB, textBytes: 2 * MiB, zeroBytes: 1 * MiB }));
    job = await writeJob(dir, { name: 'json-shapes', source: './disk.img' });
    repository = join(dir, 'repo');
    const initRun = await timed(['init', job, '--json']);
    expectSuccess(initRun.result);
    initJson = parseJson(initRun.result);
    initWindow = [initRun.started, initRun.ended];
    chunkSize = (await readRepositoryConfig(repository)).chunkSize;
    // Two backups of the same volume: the second finds every chunk already stored.
    for (let i = 0; i < 2; i++) {
      const before = await treeBytes(repository);
      const { result, started, ended } = await timed(['backup', job, '--json']);
      expectSuccess(result);
      backups.push({ json: parseJson(result), started, ended, repositoryGrowth: (await treeBytes(repository)) - before });
    }
  });

  test('init --json: { id, location } of the new repository', async () => {
    expectKeys(initJson, ['id', 'location']);
    expect(initJson.id).toMatch(HEX64);
    expect(initJson.id).toBe((await readRepositoryConfig(repository)).id);
    expect(initJson.location).toBe(repository);
  });

  test('backup --json: { snapshot, time, tags, size, bytesRead, bytesAdded, chunks, durationMs, imageDigest }', async () => {
    const hashes = await chunkHashes(image, chunkSize);
    const dataChunks = hashes.filter((h) => h !== null);
    for (const [i, { json, started, ended, repositoryGrowth }] of backups.entries()) {
      expectKeys(json, ['snapshot', 'time', 'tags', 'size', 'bytesRead', 'bytesAdded', 'chunks', 'durationMs', 'imageDigest']);
      expect(json.snapshot).toMatch(HEX64);
      expect((await stat(join(repository, 'snapshots', json.snapshot))).isFile()).toBe(true);
      expectIsoTimeWithin(json.time, started, ended);
      expect(json.tags).toEqual([]); // no --tag given (test/forget.test.ts backs up with tags)
      expect(json.size).toBe(SIZE);
      expect(json.bytesRead).toBe(SIZE); // mode exact reads every byte
      // What the repository grew by, to the byte: packs, index and the snapshot itself.
      expect(json.bytesAdded).toBe(repositoryGrowth);

      expectKeys(json.chunks, ['data', 'new', 'zero', 'unused']);
      expect(json.chunks.data).toBe(dataChunks.length);
      expect(json.chunks.zero).toBe(hashes.length - dataChunks.length);
      expect(json.chunks.unused).toBe(0);
      expect(json.chunks.new).toBe(i === 0 ? new Set(dataChunks).size : 0);

      expectCount(json.durationMs);
      expect(json.durationMs).toBeLessThanOrEqual(ended - started);

      expectKeys(json.imageDigest, ['algorithm', 'hex']);
      expect(json.imageDigest).toEqual({ algorithm: 'blake3-chunks', hex: await imageDigestWithStandardTools(image, chunkSize) });
    }
    expect(backups[1]!.json.snapshot).not.toBe(backups[0]!.json.snapshot);
    expect(Date.parse(backups[1]!.json.time)).toBeGreaterThan(Date.parse(backups[0]!.json.time));
  });

  test('snapshots --json: oldest first, each { id, time, hostname, job, tags, kind, source, size, imageDigest, layout, bytesAdded }', async () => {
    const rows = parseJson<any[]>(await runCli(['snapshots', job, '--json'], { env: PASSWORD_ENV }));
    expect(Array.isArray(rows)).toBe(true);
    expect(rows).toHaveLength(backups.length);
    for (const [i, row] of rows.entries()) {
      const made = backups[i]!.json;
      expectKeys(row, ['id', 'time', 'hostname', 'job', 'tags', 'kind', 'source', 'size', 'imageDigest', 'layout', 'bytesAdded']);
      expect(row.id).toBe(made.snapshot);
      expect(row.time).toBe(made.time);
      expect(row.hostname).toBe(hostname());
      expect(row.job).toBe('json-shapes');
      expect(row.tags).toEqual([]);
      expect(row.kind).toBe('volume');
      expect(row.source).toEqual({ type: 'volume', path: image });
      expect(row.size).toBe(SIZE);
      expect(row.imageDigest).toEqual(made.imageDigest);
      expect(row.bytesAdded).toBe(made.bytesAdded);
      expectKeys(row.layout, ['size', 'sectorSize', 'kind', 'partitionTable', 'filesystem', 'mode', 'partitions']);
      expect(row.layout).toEqual({ size: SIZE, sectorSize: 512, kind: 'file', partitionTable: { type: 'none' }, filesystem: 'ext4', mode: 'exact', partitions: [] });
    }
  });

  test('show --json: the manifest (without its chunk maps), its id, and what the run added', async () => {
    const rows = parseJson<any[]>(await runCli(['snapshots', job, '--json'], { env: PASSWORD_ENV }));
    for (const [i, made] of backups.map((b) => b.json).entries()) {
      const shown = parseJson(await runCli(['show', job, made.snapshot, '--json'], { env: PASSWORD_ENV }));
      expectKeys(shown, ['id', 'version', 'time', 'hostname', 'job', 'tags', 'source', 'layout', 'size', 'chunkSize', 'chunkCount', 'imageDigest', 'compression', 'stats', 'bytesAdded']);
      const { id, time, hostname: host, job: jobName, source, layout, size, imageDigest, bytesAdded } = rows[i];
      expect(shown).toMatchObject({ id, time, hostname: host, job: jobName, tags: [], source, layout, size, imageDigest, bytesAdded });
      expect(shown.version).toBe(4); // the manifest version that records a blake3-chunks image digest (docs/FORMAT.md)
      expect(shown.chunkSize).toBe(chunkSize);
      expect(shown.chunkCount).toBe(SIZE / chunkSize);
      expect(shown.compression).toBe('zstd');

      expectKeys(shown.stats, ['bytesRead', 'bytesAdded', 'dataChunks', 'zeroChunks', 'unusedChunks', 'newChunks', 'durationMs']);
      expect(shown.stats).toEqual({
        bytesRead: made.bytesRead,
        // The run's packs and index; the snapshot object itself comes on top in `bytesAdded`.
        bytesAdded: made.bytesAdded - (await stat(join(repository, 'snapshots', id))).size,
        dataChunks: made.chunks.data,
        zeroChunks: made.chunks.zero,
        unusedChunks: made.chunks.unused,
        newChunks: made.chunks.new,
        durationMs: made.durationMs,
      });
    }
  });

  test('restore --json: { snapshot, destination, bytesWritten, bytesFetched, delta, imageDigest }, the destination as an absolute path', async () => {
    const result = await runCli(['restore', job, 'latest', '--to', 'restored.img', '--json'], { env: PASSWORD_ENV, cwd: dir });
    expectSuccess(result);
    const json = parseJson(result);
    expectKeys(json, ['snapshot', 'destination', 'bytesWritten', 'bytesFetched', 'delta', 'imageDigest']);
    expect(json.snapshot).toBe(backups[1]!.json.snapshot);
    expect(json.destination).toBe(join(dir, 'restored.img'));
    // A new file: only data chunks are written; zero chunks stay holes.
    const shown = parseJson(await runCli(['show', job, 'latest', '--json'], { env: PASSWORD_ENV }));
    expect(json.bytesWritten).toBe(shown.stats.dataChunks * shown.chunkSize);
    expect(json.bytesFetched).toBeGreaterThan(0);
    expect(json.delta).toBe(false);
    expect(json.imageDigest).toEqual(backups[1]!.json.imageDigest);
    expect(await sameBytes(image, json.destination)).toBe(true);
  });

  test.each([false, true])('check --json (read data: %s): { snapshots, packs, blobs, readData, packsRead, bytesRead, problems, unreferencedPacks }', async (readData) => {
    const result = await runCli(['check', job, '--json', ...(readData ? ['--read-data'] : [])], { env: PASSWORD_ENV });
    expectSuccess(result);
    const json = parseJson(result);
    expectKeys(json, ['snapshots', 'packs', 'blobs', 'readData', 'packsRead', 'bytesRead', 'problems', 'unreferencedPacks']);
    const packs = await listPacks(repository);
    expect(json.snapshots).toBe((await readdir(join(repository, 'snapshots'))).length);
    expect(json.packs).toBe(packs.length);
    // Every data chunk stored, plus the blobs that list a snapshot's chunks.
    expectCount(json.blobs);
    expect(json.blobs).toBeGreaterThan(backups[0]!.json.chunks.new);
    expect(json.readData).toBe(readData);
    let packBytes = 0;
    for (const pack of packs) packBytes += (await stat(join(repository, pack))).size;
    expect(json.bytesRead).toBe(readData ? packBytes : 0);
    expect(json.packsRead).toBe(readData ? packs.length : 0);
    expect(json.problems).toEqual([]);
    expect(json.unreferencedPacks).toEqual([]);
  });

  test('key list --json and key add --json: { id, created, hostname, username, current } and { id }', async () => {
    const [key] = parseJson<any[]>(await runCli(['key', 'list', job, '--json'], { env: PASSWORD_ENV }));
    expectKeys(key, ['id', 'created', 'hostname', 'username', 'current']);
    expect(await readdir(join(repository, 'keys'))).toEqual([key.id]);
    expectIsoTimeWithin(key.created, ...initWindow);
    expect(key.hostname).toBe(hostname());
    expect(key.username).toBe(userInfo().username);
    expect(key.current).toBe(true);

    const env = { ...PASSWORD_ENV, CAIRN_SECOND_PASSWORD: 'a second password for the json test' };
    const added = await runCli(['key', 'add', job, '--new-password-env', 'CAIRN_SECOND_PASSWORD', '--json'], { env });
    expectSuccess(added);
    const addedJson = parseJson(added);
    expectKeys(addedJson, ['id']);
    expect(addedJson.id).toMatch(HEX64);
    expect((await readdir(join(repository, 'keys'))).sort()).toEqual([key.id, addedJson.id].sort());

    // Oldest first; `current` marks the key the password given opened.
    const withFirst = parseJson<any[]>(await runCli(['key', 'list', job, '--json'], { env: PASSWORD_ENV }));
    expect(withFirst.map((k) => [k.id, k.current])).toEqual([[key.id, true], [addedJson.id, false]]);
    const withSecond = parseJson<any[]>(await runCli(['key', 'list', job, '--json'], { env: { CAIRN_PASSWORD: env.CAIRN_SECOND_PASSWORD } }));
    expect(withSecond.map((k) => [k.id, k.current])).toEqual([[key.id, false], [addedJson.id, true]]);
  });

  test('validate --json: { valid, job }, the job as an absolute path', async () => {
    const json = parseJson(await runCli(['validate', 'job.json', '--json'], { cwd: dir }));
    expectKeys(json, ['valid', 'job']);
    expect(json).toEqual({ valid: true, job });
  });

  test('plugins --json: each { id, version, folder, state, contributes, activationEvents, problems }, as the manifests declare', async () => {
    const result = await runCli(['plugins', '--json']);
    expectSuccess(result);
    const rows = parseJson<any[]>(result);
    const installed: string[] = JSON.parse(await readFile(join(REPO_ROOT, 'plugins.json'), 'utf8')).plugins;
    expect(rows.map((r) => r.folder)).toEqual(installed.map((entry) => resolve(REPO_ROOT, entry)));
    for (const row of rows) {
      expectKeys(row, ['id', 'version', 'folder', 'state', 'contributes', 'activationEvents', 'problems']);
      const manifest = JSON.parse(await readFile(join(row.folder, 'package.json'), 'utf8'));
      expect(row.id).toBe(manifest.name.replace(/^@/, '').replace('/', '.'));
      expect(row.version).toBe(manifest.version);
      expect(row.state).toBe('inactive'); // listing plugins activates none
      const declared = Object.entries(manifest.cairn.contributes as Record<string, Array<{ type: string }>>).flatMap(([point, items]) =>
        items.map((item) => ({ point: point.replace(/s$/, ''), type: item.type })),
      );
      expect(row.contributes).toEqual(declared.map((c) => `${c.point}:${c.type}`));
      const events = { source: 'onSource', target: 'onTarget', codec: 'onCodec', notifier: 'onNotifier' } as Record<string, string>;
      // A web app is static files: it implies no activation event (no plugin code runs for it).
      expect(row.activationEvents).toEqual(declared.filter((c) => events[c.point]).map((c) => `${events[c.point]}:${c.type}`));
      expect(row.problems).toEqual([]);
    }
  });

  describe('failures with --json: { error: { code, message } } on stderr, nothing on stdout', () => {
    const failures: Array<[string, () => Promise<string[]>, Record<string, string>, number, string, RegExp]> = [
      ['a wrong password', async () => ['snapshots', job], { CAIRN_PASSWORD: 'not the password' }, 12, 'CAIRN_WRONG_PASSWORD', /wrong password/i],
      ['no repository', async () => ['snapshots', await writeJob(dir, { source: './disk.img', repository: './nothing-here' }, 'no-repo.json')], PASSWORD_ENV, 10, 'CAIRN_REPOSITORY_NOT_FOUND', /No repository at/],
      ['an invalid job file', async () => ['backup', await writeJob(dir, { source: './disk.img', chunkSize: 1000 }, 'invalid.json')], PASSWORD_ENV, 2, 'CAIRN_JOB_INVALID', /\/chunkSize/],
      ['an unknown snapshot', async () => ['show', job, 'abcdef0123'], PASSWORD_ENV, 2, 'CAIRN_SNAPSHOT_NOT_FOUND', /No snapshot abcdef0123/],
      ['an existing destination without --force', async () => ['restore', job, 'latest', '--to', image], PASSWORD_ENV, 1, 'CAIRN_RESTORE_DESTINATION', /--force/],
      ['bad usage (a missing option) is reported as JSON too', async () => ['restore', job, 'latest'], PASSWORD_ENV, 2, 'CAIRN_USAGE', /\bto\b/],
    ];
    test.each(failures)('%s', async (_name, args, env, exitCode, code, message) => {
      const result = await runCli([...(await args()), '--json'], { env });
      expect(result.exitCode, result.stderr).toBe(exitCode);
      expect(result.stdout).toBe('');
      const lines = result.stderr.split('\n').filter(Boolean);
      expect(lines, result.stderr).toHaveLength(1);
      const json = JSON.parse(lines[0]!);
      expectKeys(json, ['error']);
      expectKeys(json.error, ['code', 'message']);
      expect(json.error.code).toBe(code);
      expect(json.error.message).toMatch(message);
    });

    test('damaged data (exit 13)', async () => {
      const copy = join(dir, 'damaged-repo');
      await run('cp', ['-a', repository, copy]);
      const [pack] = await listPacks(copy);
      await flipByte(join(copy, pack!), Math.floor((await stat(join(copy, pack!))).size / 2));
      const damagedJob = await writeJob(dir, { source: './disk.img', repository: './damaged-repo' }, 'damaged.json');
      const result = await runCli(['restore', damagedJob, 'latest', '--to', join(dir, 'never.img'), '--json'], { env: PASSWORD_ENV });
      expect(result.exitCode, result.stderr).toBe(13);
      expect(result.stdout).toBe('');
      const json = JSON.parse(result.stderr);
      expectKeys(json, ['error']);
      expectKeys(json.error, ['code', 'message']);
      expect(json.error).toEqual({ code: 'CAIRN_DAMAGE', message: expect.stringMatching(/damaged/) });
    });
  });
});
