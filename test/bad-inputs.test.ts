import { cp, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  FIXTURE_PLUGINS,
  MiB,
  escapeRegExp,
  PASSWORD_ENV,
  backup,
  expectCleanFailure,
  expectSuccess,
  flipByte,
  init,
  listPacks,
  makeVolume,
  parseJson,
  runCli,
  tempDir,
  useSuiteScope,
  writeJob,
  writePluginsFile,
} from './utils/index.js';

/** Every file below `dir` with its size and modification time, to prove nothing was written. */
async function snapshotTree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  const rows = await Promise.all(
    entries.map(async (e) => {
      const s = await stat(join(e.parentPath, e.name));
      return `${join(e.parentPath, e.name)} ${s.size} ${s.mtimeMs}`;
    }),
  );
  return rows.sort();
}

const escape = (text: string) => new RegExp(escapeRegExp(text));

describe('bad inputs give their exit code and a clear message', () => {
  const scope = useSuiteScope();
  let dir: string;
  let image: string;
  let repository: string;
  let job: string;
  let snapshotId: string;
  let copies = 0;

  /** A copy of the baseline repository, with a job file pointing at it. */
  async function repositoryCopy(): Promise<{ repository: string; job: string }> {
    const name = `repo-copy-${++copies}`;
    await cp(repository, join(dir, name), { recursive: true });
    return { repository: join(dir, name), job: await writeJob(dir, { source: image, repository: `./${name}` }, `${name}.json`) };
  }

  beforeAll(async () => {
    dir = await tempDir(scope);
    ({ image } = await makeVolume(dir, 'disk', 32 * MiB, { seed: 31, randomBytes: 2 * MiB, textBytes: 1 * MiB }));
    repository = join(dir, 'repo');
    job = await writeJob(dir, { source: image });
    await init(job);
    snapshotId = (await backup(job)).snapshot;
  });

  describe('invalid job files (exit 2)', () => {
    test('a job file that is not JSON', async () => {
      const path = join(dir, 'not-json.json');
      await writeFile(path, '{ "name": "broken", ');
      for (const command of ['validate', 'backup']) {
        expectCleanFailure(await runCli([command, path], { env: PASSWORD_ENV }), 2, /is not valid JSON/, escape(path));
      }
    });

    test('a job file that does not exist', async () => {
      const path = join(dir, 'no-such-job.json');
      expectCleanFailure(await runCli(['backup', path], { env: PASSWORD_ENV }), 2, /Cannot read the job file/, escape(path));
    });

    const invalid: Array<[string, (job: Record<string, any>) => void, RegExp[]]> = [
      ['a wrongly typed plugin setting', (j) => (j.target = { type: 'local', path: 5 }), [/\/target\/path: must be string/, /plugin cairn\.target-local/]],
      ['an unknown plugin setting', (j) => (j.target.bucket = 'x'), [/\/target: must NOT have additional property "bucket"/, /plugin cairn\.target-local/]],
      ['a plugin setting out of range', (j) => (j.compression = { type: 'zstd', level: 99 }), [/\/compression\/level: must be <= 19/, /plugin cairn\.codec-zstd/]],
      ['a source type no plugin provides', (j) => (j.source = { type: 'tape', path: '/dev/st0' }), [/\/source\/type: must be one of "volume", "files", not "tape"/]],
      ['a missing required property', (j) => delete j.password, [/\/: must have required property 'password'/]],
      ['a bad password reference', (j) => (j.password = { literal: 'hunter2' }), [/\/password: must be \{"env": NAME\}, \{"file": PATH\} or \{"command": \[ARGV\.\.\.\]\}/]],
    ];
    test.each(invalid)('%s', async (_name, mutate, patterns) => {
      const parsed = JSON.parse(await readFile(job, 'utf8'));
      // The source does not exist either: validation comes first, before any I/O.
      parsed.source.path = join(dir, 'does-not-exist.img');
      mutate(parsed);
      const path = join(dir, `invalid-${copies++}.json`);
      await writeFile(path, JSON.stringify(parsed));
      const before = await snapshotTree(repository);
      const result = await runCli(['backup', path], { env: PASSWORD_ENV });
      expectCleanFailure(result, 2, /is invalid/, escape(path), ...patterns);
      expect(result.stderr).not.toMatch(/does-not-exist/);
      expect(await snapshotTree(repository)).toEqual(before);
    });

    test('bad command-line usage', async () => {
      expectCleanFailure(await runCli(['frobnicate'], {}), 2, /Unknown argument: frobnicate/, /--help/);
      expectCleanFailure(await runCli(['restore', job, 'latest'], { env: PASSWORD_ENV }), 2, /Missing required argument: to/);
    });

    test('restore options that make no sense: an empty --to, a negative --size, a --size smaller than the image', async () => {
      const never = join(dir, 'never.img');
      expectCleanFailure(await runCli(['restore', job, 'latest', '--to', ''], { env: PASSWORD_ENV }), 2, /--to needs the image file or block device to restore to, not an empty path/);
      for (const size of ['-5G', '-1']) {
        const result = await runCli(['restore', job, 'latest', '--to', never, '--size', size], { env: PASSWORD_ENV });
        expectCleanFailure(result, 2, escape(`--size must be a positive number of bytes, optionally with K, M, G or T: not "${size}"`));
        expect(result.stderr).not.toMatch(/Unknown argument/);
      }
      expectCleanFailure(
        await runCli(['restore', job, 'latest', '--to', never, '--size', '1'], { env: PASSWORD_ENV }),
        2,
        // A smaller --size shrinks the image (restore --shrink), but nothing fits in 1 byte.
        /holds 1 bytes, too small for the data of the snapshot's disk/,
        /needs at least \d+ bytes/,
      );
      await expect(stat(never)).rejects.toThrow(/ENOENT/);
    });

    test('a job file saved with a UTF-8 byte order mark is read like any other', async () => {
      const path = join(dir, 'with-bom.json');
      await writeFile(path, '\uFEFF' + (await readFile(job, 'utf8')));
      expectSuccess(await runCli(['validate', path], { env: PASSWORD_ENV }));
      const listed = await runCli(['snapshots', path, '--json'], { env: PASSWORD_ENV });
      expectSuccess(listed);
      expect(parseJson<Array<{ id: string }>>(listed).map((s) => s.id)).toContain(snapshotId);
    });

    test('a snapshot prefix that looks like a number is taken as typed', async () => {
      // Hex ids can read as numbers (0012e4 = 120000); a prefix is matched as the text it is.
      for (const prefix of ['0012e4', '4982076e05', '0123456789']) {
        const restored = await runCli(['restore', job, prefix, '--to', join(dir, 'never.img')], { env: PASSWORD_ENV });
        expectCleanFailure(restored, 2, new RegExp(`No snapshot ${prefix} in `));
        expectCleanFailure(await runCli(['show', job, prefix], { env: PASSWORD_ENV }), 2, new RegExp(`No snapshot ${prefix} in `));
      }
    });
  });

  test('a missing source (exit 1) names the path', async () => {
    const missing = join(dir, 'gone.img');
    const missingJob = await writeJob(dir, { source: missing }, 'missing-source.json');
    const before = await snapshotTree(repository);
    expectCleanFailure(await runCli(['backup', missingJob], { env: PASSWORD_ENV }), 1, escape(missing), /does not exist/);
    expect(await snapshotTree(repository)).toEqual(before);

    const folder = join(dir, 'a-folder');
    await mkdir(folder, { recursive: true });
    const folderJob = await writeJob(dir, { source: folder }, 'folder-source.json');
    expectCleanFailure(await runCli(['backup', folderJob], { env: PASSWORD_ENV }), 1, escape(folder), /not an image file or a block device/);
  });

  test('an empty source (exit 1) is refused: there is nothing to back up', async () => {
    const empty = join(dir, 'empty.img');
    await writeFile(empty, '');
    const emptyJob = await writeJob(dir, { source: empty }, 'empty-source.json');
    const before = await snapshotTree(repository);
    expectCleanFailure(await runCli(['backup', emptyJob], { env: PASSWORD_ENV }), 1, escape(`Source ${empty} is empty (0 bytes): there is nothing to back up`));
    expect(await snapshotTree(repository)).toEqual(before);
  });

  test('a wrong password (exit 12) says so', async () => {
    for (const command of [['backup', job], ['restore', job, 'latest', '--to', join(dir, 'never.img')]]) {
      const result = await runCli(command, { env: { CAIRN_PASSWORD: 'not the password' } });
      expectCleanFailure(result, 12, /wrong password/i);
    }
    await expect(stat(join(dir, 'never.img'))).rejects.toThrow(/ENOENT/);
    // --json turns the error into JSON on stderr, with the same exit code.
    const json = await runCli(['snapshots', job, '--json'], { env: { CAIRN_PASSWORD: 'not the password' } });
    expect(json.exitCode).toBe(12);
    expect(JSON.parse(json.stderr)).toMatchObject({ error: { code: 'CAIRN_WRONG_PASSWORD', message: expect.stringMatching(/wrong password/i) } });
  });

  test('an unset password variable (exit 2) names it', async () => {
    expectCleanFailure(await runCli(['snapshots', job], { env: {} }), 2, /CAIRN_PASSWORD/, /not set/);
  });

  test('a missing repository (exit 10) says to run init', async () => {
    const emptyJob = await writeJob(dir, { source: image, repository: './no-repo-here' }, 'no-repo.json');
    for (const command of ['backup', 'snapshots']) {
      expectCleanFailure(await runCli([command, emptyJob], { env: PASSWORD_ENV }), 10, /No repository at/, escape(join(dir, 'no-repo-here')), /cairn init/);
    }
  });

  test('init over an existing repository is refused (exit 1)', async () => {
    const before = await snapshotTree(repository);
    expectCleanFailure(await runCli(['init', job], { env: PASSWORD_ENV }), 1, /already exists/, escape(repository));
    expect(await snapshotTree(repository)).toEqual(before);
  });

  test('a repository of a newer format version (exit 1) says to upgrade', async () => {
    const copy = await repositoryCopy();
    const configPath = join(copy.repository, 'config');
    const config = JSON.parse(await readFile(configPath, 'utf8'));
    expect(config.version).toBe(7);
    await writeFile(configPath, JSON.stringify({ ...config, version: 99 }, null, 2));
    const before = await snapshotTree(copy.repository);
    for (const command of ['snapshots', 'backup']) {
      expectCleanFailure(await runCli([command, copy.job], { env: PASSWORD_ENV }), 1, /format version 99/, /[Uu]pgrade cairn/);
    }
    // Not even the wrong password is asked about first, and nothing was written.
    expectCleanFailure(await runCli(['snapshots', copy.job], { env: { CAIRN_PASSWORD: 'wrong' } }), 1, /[Uu]pgrade cairn/);
    expect(await snapshotTree(copy.repository)).toEqual(before);
  });

  describe('a corrupted pack', () => {
    const positions: Array<[string, (size: number) => number, boolean]> = [
      ['its first byte', () => 0, false],
      ['the middle of its blobs', (size) => Math.floor(size / 2), true],
      ['its header', (size) => size - 40, false],
      ['its last byte (the header length)', (size) => size - 1, false],
    ];
    test.each(positions)('a flipped byte in %s is found by check --read-data (exit 13), naming pack and snapshot', async (_where, at, alsoJson) => {
      const copy = await repositoryCopy();
      const packs = await listPacks(copy.repository);
      expect(packs.length).toBeGreaterThan(0);
      const pack = packs[0]!;
      const packId = pack.split('/').pop()!;
      await flipByte(join(copy.repository, pack), at((await stat(join(copy.repository, pack))).size));

      const result = await runCli(['check', copy.job, '--read-data'], { env: PASSWORD_ENV });
      expect(result.exitCode, result.stdout + result.stderr).toBe(13);
      const output = result.stdout + result.stderr;
      expect(output).toContain(pack);
      expect(output).toContain(snapshotId.slice(0, 12));
      expect(output).toMatch(/DAMAGE/);
      expect(output).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
      if (!alsoJson) return;

      const json = parseJson<{ problems: Array<{ object: string; snapshots: string[] }> }>(
        await runCli(['check', copy.job, '--read-data', '--json'], { env: PASSWORD_ENV }),
      );
      expect(json.problems.some((p) => p.object.includes(packId) && p.snapshots.includes(snapshotId))).toBe(true);
    });

    test('restore of a damaged snapshot fails loudly and leaves no destination file', async () => {
      const copy = await repositoryCopy();
      const pack = (await listPacks(copy.repository))[0]!;
      const size = (await stat(join(copy.repository, pack))).size;
      await flipByte(join(copy.repository, pack), Math.floor(size / 3));

      const outDir = join(dir, `restore-out-${copies}`);
      await mkdir(outDir);
      const destination = join(outDir, 'restored.img');
      // Several times: how the failure meets the worker threads and the image hasher varies
      // from run to run, and every run must end with the same clean report.
      for (let attempt = 0; attempt < 3; attempt++) {
        const result = await runCli(['restore', copy.job, 'latest', '--to', destination], { env: PASSWORD_ENV });
        expectCleanFailure(result, 13, /damaged/, /fails authentication/);
        // Neither the destination nor a half-written temporary file is left behind.
        expect(await readdir(outDir)).toEqual([]);
      }

      // Even --force over an existing file keeps that file as it was.
      await writeFile(destination, 'the old image\n');
      const forced = await runCli(['restore', copy.job, 'latest', '--to', destination, '--force'], { env: PASSWORD_ENV });
      expect(forced.exitCode).toBe(13);
      expect(await readFile(destination, 'utf8')).toBe('the old image\n');
      expect(await readdir(outDir)).toEqual(['restored.img']);
    });
  });

  describe('plugin problems (exit 2), each naming the plugin', () => {
    test('a plugin folder that does not exist, and a target type no plugin provides', async () => {
      const missingFolder = join(dir, 'plugins/not-there');
      const plugins = await writePluginsFile(dir, [missingFolder], 'plugins-missing.json');
      const parsed = JSON.parse(await readFile(job, 'utf8'));
      parsed.target = { type: 'tape-robot', slot: 3 };
      const tapeJob = join(dir, 'tape-job.json');
      await writeFile(tapeJob, JSON.stringify(parsed));

      const result = await runCli(['backup', tapeJob, '--plugins', plugins], { env: PASSWORD_ENV });
      expectCleanFailure(result, 2, /\/target\/type: must be one of "local", not "tape-robot"/, /could not be loaded/, escape(missingFolder), /was not found/);

      // The same through CAIRN_PLUGINS.
      const viaEnv = await runCli(['validate', tapeJob], { env: { ...PASSWORD_ENV, CAIRN_PLUGINS: plugins } });
      expectCleanFailure(viaEnv, 2, escape(missingFolder));

      // The other plugins keep working: a local job is fine with the same list.
      const ok = await runCli(['snapshots', job, '--json', '--plugins', plugins], { env: PASSWORD_ENV });
      expectSuccess(ok);
      expect(parseJson<Array<{ id: string }>>(ok).map((s) => s.id)).toEqual([snapshotId]);
    });

    test('a plugin with an incompatible engines.cairn', async () => {
      const plugins = await writePluginsFile(dir, [join(FIXTURE_PLUGINS, 'incompatible-engine')], 'plugins-incompatible.json');
      const futureJob = join(dir, 'future-job.json');
      await writeFile(futureJob, JSON.stringify({ ...JSON.parse(await readFile(job, 'utf8')), target: { type: 'future' } }));
      const result = await runCli(['backup', futureJob, '--plugins', plugins], { env: PASSWORD_ENV });
      expectCleanFailure(result, 2, /cairn-e2e-incompatible-engine/, /requires cairn \^99\.0\.0, but this is cairn 0\.1\.\d+/);

      const list = await runCli(['plugins', '--json', '--plugins', plugins], {});
      expect(list.exitCode).toBe(2);
      const entry = parseJson<Array<{ id: string; state: string; problems: string[] }>>(list).find((p) => p.id === 'cairn-e2e-incompatible-engine');
      expect(entry).toMatchObject({ state: 'failed', problems: [expect.stringMatching(/requires cairn \^99\.0\.0/)] });
    });

    test('a plugin whose activate() throws', async () => {
      const plugins = await writePluginsFile(dir, [join(FIXTURE_PLUGINS, 'throwing-activate')], 'plugins-throwing.json');
      const throwingJob = join(dir, 'throwing-job.json');
      await writeFile(throwingJob, JSON.stringify({ ...JSON.parse(await readFile(job, 'utf8')), target: { type: 'throwing' } }));
      const result = await runCli(['backup', throwingJob, '--plugins', plugins], { env: PASSWORD_ENV });
      expectCleanFailure(result, 2, /Activating plugin 'cairn-e2e-throwing-activate' failed/, /the throwing-activate fixture refuses to start/);
      // It is only activated when used: the local job next to it runs.
      expectSuccess(await runCli(['snapshots', job, '--plugins', plugins], { env: PASSWORD_ENV }));
    });

    test('a plugin with a broken manifest', async () => {
      const plugins = await writePluginsFile(dir, [join(FIXTURE_PLUGINS, 'broken-manifest')], 'plugins-broken.json');
      const list = await runCli(['plugins', '--plugins', plugins], {});
      expect(list.exitCode).toBe(2);
      expect(list.stdout).toMatch(/cairn-e2e-broken-manifest.*failed/);
      expect(list.stdout).toMatch(/Plugin 'cairn-e2e-broken-manifest' has a broken manifest: .*schema/);
      expectSuccess(await runCli(['snapshots', job, '--plugins', plugins], { env: PASSWORD_ENV }));
    });

    test('a plugins.json that is not a plugin list', async () => {
      const plugins = join(dir, 'plugins-bad.json');
      await writeFile(plugins, '{"plugins": "./packages/target-local"}');
      expectCleanFailure(await runCli(['validate', job, '--plugins', plugins], {}), 2, escape(plugins), /must be \{"plugins"/);
    });
  });
});
