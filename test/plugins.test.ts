import { access, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  FIXTURE_PLUGINS,
  MiB,
  PASSWORD_ENV,
  REPO_ROOT,
  backup,
  chunkHashes,
  expectCleanFsck,
  expectCleanFailure,
  expectSuccess,
  init,
  makeVolume,
  parseJson,
  readRepositoryConfig,
  restore,
  runCli,
  runCliInProcess,
  sameBytes,
  tempDir,
  useSuiteScope,
  useTempDir,
  writeJob,
  writePluginsFile,
  type BackupSummary,
} from './utils/index.js';

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

interface PluginRow {
  id: string;
  folder: string | null;
  state: 'inactive' | 'active' | 'failed';
  contributes: string[];
  activationEvents: string[];
  problems: string[];
}

describe('a third-party codec plugin from a folder outside the workspace packages', () => {
  const scope = useSuiteScope();
  let dir: string;
  let image: string;
  let plugins: string;
  let job: string;
  let result: BackupSummary;

  beforeAll(async () => {
    dir = await tempDir(scope);
    ({ image } = await makeVolume(dir, 'disk', 48 * MiB, { seed: 41, randomBytes: 2 * MiB, textBytes: 6 * MiB, zeroBytes: 1 * MiB }));
    plugins = await writePluginsFile(dir, [join(FIXTURE_PLUGINS, 'codec-xor')]);
    job = await writeJob(dir, { source: image, compression: { type: 'xor-test', level: 6 } });
    await init(job, { env: { CAIRN_PLUGINS: plugins } });
    result = await backup(job, { env: { CAIRN_PLUGINS: plugins } });
  });

  test('backs up and restores byte-identical through the fixture codec', async () => {
    const withPlugins = { env: PASSWORD_ENV };
    expectSuccess(await runCli(['validate', job, '--plugins', plugins], withPlugins));
    // The text deflates: the codec made the blobs smaller, so cairn kept its output.
    const { chunkSize } = await readRepositoryConfig(join(dir, 'repo'));
    const nonZero = (await chunkHashes(image, chunkSize)).filter((h) => h !== null).length;
    expect(result.chunks.new).toBe(nonZero);
    expect(result.bytesAdded).toBeLessThan(nonZero * chunkSize * 0.7);

    const restored = join(dir, 'restored.img');
    await restore(job, 'latest', restored, { env: { CAIRN_PLUGINS: plugins } });
    expect(await sameBytes(image, restored)).toBe(true);
    await expectCleanFsck(restored);
    expectSuccess(await runCli(['check', job, '--read-data', '--plugins', plugins], withPlugins));
  });

  test('without the plugin the blobs cannot be read, and cairn says which codec is missing', async () => {
    const withoutCodec = await writePluginsFile(dir, [], 'plugins-without-codec.json');
    // The same repository through a job that does not name the codec (it would be invalid).
    const zstdJob = await writeJob(dir, { source: image }, 'zstd-job.json');
    const destination = join(dir, 'no-codec.img');
    const result = await runCli(['restore', zstdJob, 'latest', '--to', destination, '--plugins', withoutCodec], { env: PASSWORD_ENV });
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toMatch(/codec id 200, which no enabled plugin provides/);
    expect(result.stderr).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
    expect(await exists(destination)).toBe(false);
    // And a job that asks for the codec is invalid without it.
    expectCleanFailure(await runCli(['validate', job, '--plugins', withoutCodec], {}), 2, /\/compression\/type: must be one of "none", "zstd", not "xor-test"/);
  });

  test("the plugin's own settings schema is merged into the job schema", async () => {
    const bad = await writeJob(dir, { source: image, compression: { type: 'xor-test', level: 12 } }, 'bad-level.json');
    const result = await runCli(['validate', bad, '--plugins', plugins], {});
    expectCleanFailure(result, 2, /\/compression\/level: must be <= 9 \(plugin cairn-e2e-codec-xor\)/);

    const schema = parseJson(await runCliInProcess(['schema', '--plugins', plugins]));
    expect(schema.properties.compression.properties.type.enum).toEqual(expect.arrayContaining(['none', 'zstd', 'xor-test']));
    expect(JSON.stringify(schema.properties.compression)).toContain('deflate level used before the XOR');
  });
});

describe('plugins are activated lazily', () => {
  const scope = useSuiteScope();
  let dir: string;
  let plugins: string;
  let marker: string;

  beforeAll(async () => {
    dir = await tempDir(scope);
    plugins = await writePluginsFile(dir, [join(FIXTURE_PLUGINS, 'explosive-target')]);
    marker = join(dir, 'explosive-was-imported');
  });

  test("a local backup never imports a target plugin it doesn't use", async () => {
    const { image } = await makeVolume(dir, 'disk', 32 * MiB, { seed: 42, randomBytes: 1 * MiB, textBytes: 1 * MiB });
    const job = await writeJob(dir, { source: image });
    const env = { ...PASSWORD_ENV, CAIRN_PLUGINS: plugins, CAIRN_E2E_EXPLOSIVE_MARKER: marker };
    for (const args of [['validate', job], ['init', job], ['backup', job], ['snapshots', job], ['check', job, '--read-data'], ['restore', job, 'latest', '--to', join(dir, 'r.img')], ['schema'], ['plugins']]) {
      expectSuccess(await runCli(args, { env }));
    }
    expect(await sameBytes(image, join(dir, 'r.img'))).toBe(true);
    expect(await exists(marker), 'the explosive plugin was imported').toBe(false);

    const list = parseJson<PluginRow[]>(await runCli(['plugins', '--json'], { env }));
    const explosive = list.find((p) => p.id === 'cairn-e2e-explosive-target');
    expect(explosive).toMatchObject({
      state: 'inactive',
      contributes: ['target:explosive'],
      activationEvents: ['onTarget:explosive'],
      problems: [],
      folder: join(FIXTURE_PLUGINS, 'explosive-target'),
    });
    expect(list.map((p) => p.id)).toEqual(expect.arrayContaining(['cairn.source-volume', 'cairn.codec-zstd', 'cairn.target-local']));
    expect(await exists(marker)).toBe(false);
  });

  test('a job that uses the plugin does import it (the marker works)', async () => {
    await rm(marker, { force: true });
    const job = join(dir, 'explosive-job.json');
    await writeJob(dir, { source: 'disk.img', extra: { target: { type: 'explosive', fuse: 'short' } } }, 'explosive-job.json');
    const result = await runCli(['snapshots', job], { env: { ...PASSWORD_ENV, CAIRN_PLUGINS: plugins, CAIRN_E2E_EXPLOSIVE_MARKER: marker } });
    expectCleanFailure(result, 1, /the explosive target stores nothing/);
    expect(await readFile(marker, 'utf8')).toMatch(/^imported by pid \d+/);
  });

  test("with the installation's plugins.json, a local backup loads no other target plugin's code", async () => {
    const dir = await useTempDir();
    const { image } = await makeVolume(dir, 'disk', 32 * MiB, { seed: 43, randomBytes: 1 * MiB, textBytes: 1 * MiB });
    const job = await writeJob(dir, { source: image });
    const trace = join(dir, 'imports.txt');
    const env = {
      ...PASSWORD_ENV,
      CAIRN_E2E_TRACE_IMPORTS: trace,
      NODE_OPTIONS: `--import=${pathToFileURL(join(REPO_ROOT, 'test/fixtures/trace-imports/register.mjs')).href}`,
    };
    expectSuccess(await runCli(['init', job], { env }));
    expectSuccess(await runCli(['backup', job], { env }));
    const imported = (await readFile(trace, 'utf8')).split('\n').filter(Boolean);

    const used = ['source-volume', 'codec-zstd', 'target-local'].map((p) => pathToFileURL(join(REPO_ROOT, 'packages', p)).href + '/');
    // The trace sees plugin code when it is loaded…
    for (const folder of used) expect(imported.some((url) => url.startsWith(folder)), `${folder} imported`).toBe(true);
    // …and none of the other plugins the installation enables.
    const installed: string[] = JSON.parse(await readFile(join(REPO_ROOT, 'plugins.json'), 'utf8')).plugins;
    const others = installed.map((entry) => pathToFileURL(resolve(REPO_ROOT, entry)).href + '/').filter((url) => !used.includes(url));
    for (const folder of others) expect(imported.filter((url) => url.startsWith(folder))).toEqual([]);
    expect(imported.filter((url) => /@aws-sdk|\/ssh2|ssh2-sftp-client/.test(url))).toEqual([]);
  });
});

describe('schema, validate and plugins commands', () => {
  test('cairn schema prints the merged schema with every plugin\'s settings', async () => {
    const result = await runCli(['schema'], {});
    expectSuccess(result);
    const schema = parseJson(result);
    expect(schema.$schema).toMatch(/json-schema\.org/);
    expect(schema.properties.target.properties.type.enum).toContain('local');
    expect(schema.properties.source.properties.type.enum).toContain('volume');
    expect(schema.properties.compression.properties.type.enum).toEqual(expect.arrayContaining(['none', 'zstd']));
    const target = JSON.stringify(schema.properties.target);
    expect(target).toContain('"local"');
    // The local target's own settings, from its schema file.
    expect(target).toContain('The directory that holds the repository');
    expect(JSON.stringify(schema.properties.compression)).toMatch(/"level"/);

    const inProcess = parseJson(await runCliInProcess(['schema']));
    expect(inProcess).toEqual(schema);
  });

  test('cairn validate accepts a good job without touching anything', async () => {
    const dir = await useTempDir();
    const job = await writeJob(dir, { source: 'not-created-yet.img' });
    const result = await runCli(['validate', job], {});
    expectSuccess(result);
    expect(result.stdout).toMatch(/is valid/);
    expect(parseJson(await runCli(['validate', job, '--json'], {}))).toEqual({ valid: true, job });
    expect(await exists(join(dir, 'repo'))).toBe(false);
  });

  test('cairn plugins lists the enabled plugins and their contributions', async () => {
    const result = await runCliInProcess(['plugins', '--json']);
    expect(result.exitCode, result.stderr).toBe(0);
    const rows = parseJson<PluginRow[]>(result);
    const byId = new Map(rows.map((r) => [r.id, r]));
    expect(byId.get('cairn.target-local')).toMatchObject({ state: 'inactive', contributes: ['target:local'] });
    expect(byId.get('cairn.codec-zstd')).toMatchObject({ state: 'inactive', contributes: ['codec:zstd'] });
    expect(byId.get('cairn.source-volume')).toMatchObject({ state: 'inactive', contributes: ['source:volume'] });
  });
});
