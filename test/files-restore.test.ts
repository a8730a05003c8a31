import { createHash } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, lstat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  EVERY_KIND,
  PASSWORD_ENV,
  buildEveryKindTree,
  cairnOk,
  compareTrees,
  expectCleanFailure,
  init,
  isSparse,
  parseJson,
  run,
  runCli,
  startCli,
  tempDir,
  useSuiteScope,
  writeFilesJob,
} from './utils/index.js';

/*
 * Restores of file snapshots made by the real `files` source and backup pipeline, through the
 * real CLI, as root, checked with independent tools (rsync -aHAX --checksum, getfacl, getfattr).
 */

interface FileRestoreJson {
  kind: 'files';
  snapshot: string;
  destination: string;
  entries: number;
  restored: number;
  unchanged: number;
  skipped: number;
  bytesWritten: number;
  warnings: number;
  verified?: { entries: number; mismatches: Array<{ path: string; problem: string }> };
}

async function restoreFiles(job: string, to: string, args: string[] = []): Promise<FileRestoreJson> {
  const result = await cairnOk('restore', job, ['latest', '--to', to, '--json', ...args], { env: { CAIRN_PROGRESS_JSON: '1' } });
  // Progress ends at its total, whatever was written, kept, linked, skipped or left a hole.
  const lines = result.stderr.split('\n').filter((line) => line.startsWith('{"progress"'));
  const { progress } = JSON.parse(lines.at(-1)!) as { progress: { bytesDone: number; bytesTotal?: number } };
  expect(progress.bytesDone).toBe(progress.bytesTotal ?? 0);
  return parseJson<FileRestoreJson>(result);
}

/** Every regular file below `root` (relative paths), with names as bytes. */
async function regularFiles(root: string): Promise<Buffer[]> {
  const found: Buffer[] = [];
  const walk = async (relative: Buffer) => {
    const folder = Buffer.concat([Buffer.from(root + '/'), relative]);
    for (const name of await readdir(folder, { encoding: 'buffer' })) {
      const path = relative.length ? Buffer.concat([relative, Buffer.from('/'), name]) : name;
      const stats = await lstat(Buffer.concat([Buffer.from(root + '/'), path]));
      if (stats.isDirectory()) await walk(path);
      else if (stats.isFile()) found.push(path);
    }
  };
  await walk(Buffer.alloc(0));
  return found;
}

const sha256 = async (path: Buffer) => createHash('sha256').update(await readFile(path)).digest('hex');

describe('restore of a file snapshot (as root)', () => {
  const scope = useSuiteScope();
  let dir: string;
  let original: string;
  let job: string;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-files-restore-');
    original = join(dir, 'orig');
    await mkdir(original);
    await buildEveryKindTree(original);
    job = await writeFilesJob(dir, { paths: [original] });
    await init(job);
    await cairnOk('backup', job, ['--json']);
  }, 300_000);

  test('the whole snapshot: rsync -aHAX --checksum, getfacl and getfattr see no difference; sparse files stay sparse; --verify agrees', async () => {
    const to = join(dir, 'whole');
    const result = await restoreFiles(job, to, ['--verify']);
    expect(result).toMatchObject({ kind: 'files', skipped: 0, warnings: 0 });
    expect(result.verified!.mismatches).toEqual([]);
    expect(await compareTrees(original, join(to, original))).toEqual([]);
    expect(await isSparse(join(to, original, EVERY_KIND.sparse))).toBe(true);
    // The comparison itself sees what it must: a changed ACL, xattr and mode.
    await run('setfacl', ['-m', 'u:999:r', join(to, original, 'acl-file')]);
    await run('setfattr', ['-n', 'user.note', '-v', 'changed', join(to, original, EVERY_KIND.regular)]);
    await chmod(join(to, original, 'private'), 0o644);
    const differences = await compareTrees(original, join(to, original));
    expect(differences.filter((d) => d.startsWith('rsync: ')).length).toBeGreaterThanOrEqual(2);
    expect(differences.some((d) => d.startsWith('getfacl output differs'))).toBe(true);
    expect(differences.some((d) => d.startsWith('getfattr output differs'))).toBe(true);
  }, 300_000);

  test('one file, and one folder, chosen by pattern', async () => {
    const one = join(dir, 'one-file');
    const file = await restoreFiles(job, one, ['--include', join(original, EVERY_KIND.regular)]);
    expect(await readdir(join(one, original))).toEqual([EVERY_KIND.regular]);
    expect(file.restored).toBe(original.split('/').length);
    expect(await readFile(join(one, original, EVERY_KIND.regular), 'utf8')).toBe('hello, files\n');

    const folder = join(dir, 'one-folder');
    await restoreFiles(job, folder, ['--include', `${original}/acl-dir`, '--include', 'sub/', '--exclude', 'foreign-owner']);
    expect((await readdir(join(folder, original))).sort()).toEqual(['acl-dir', 'sub']);
    expect(await readdir(join(folder, original, 'sub'))).toEqual(['hard-b']);
    expect(await compareTrees(join(original, 'acl-dir'), join(folder, original, 'acl-dir'))).toEqual([]);
  }, 120_000);

  test('--overwrite if-changed, never and always', async () => {
    const to = join(dir, 'overwrite');
    const include = ['--include', join(original, 'sub'), '--include', join(original, EVERY_KIND.regular)];
    const first = await restoreFiles(job, to, include);
    expect(first.skipped).toBe(0);
    await writeFile(join(to, original, EVERY_KIND.regular), 'edited\n');

    const never = await restoreFiles(job, to, [...include, '--overwrite', 'never']);
    expect(never).toMatchObject({ restored: 0, skipped: 3 });
    expect(await readFile(join(to, original, EVERY_KIND.regular), 'utf8')).toBe('edited\n');

    const ifChanged = await restoreFiles(job, to, include);
    expect(ifChanged).toMatchObject({ restored: 1, skipped: 0, unchanged: first.entries - 1 });
    expect(await readFile(join(to, original, EVERY_KIND.regular), 'utf8')).toBe('hello, files\n');

    const always = await restoreFiles(job, to, [...include, '--overwrite', 'always']);
    expect(always.restored).toBe(3);
    expect(await compareTrees(join(original, 'sub'), join(to, original, 'sub'))).toEqual([]);
  }, 120_000);

  test('a restore killed midway leaves no half-written file under a real name; the next one removes its temporary files', async () => {
    const to = join(dir, 'killed');
    const running = startCli(['restore', job, 'latest', '--to', to], { env: PASSWORD_ENV });
    // Killed while it writes the large file: its temporary file is there.
    const deadline = Date.now() + 60_000;
    let temporary: string | undefined;
    while (!temporary && Date.now() < deadline) {
      temporary = (await readdir(join(to, original)).catch(() => [] as string[])).find((name) => name.startsWith('.tmp-'));
      if (!temporary) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    running.child.kill('SIGKILL');
    const killed = await running.result;
    expect(killed.signal).toBe('SIGKILL');
    expect(temporary).toBeDefined();
    const restored = join(to, original);
    for (const path of await regularFiles(restored)) {
      const name = path.toString('latin1');
      if (name.split('/').pop()!.startsWith('.tmp-')) continue;
      expect(await sha256(Buffer.concat([Buffer.from(restored + '/'), path])), name).toBe(await sha256(Buffer.concat([Buffer.from(original + '/'), path])));
    }
    const again = await restoreFiles(job, to);
    expect(again.skipped).toBe(0);
    expect(await compareTrees(original, restored)).toEqual([]);
  }, 300_000);

  test('refuses an existing file as destination, image options, and volume-only options', async () => {
    const file = join(dir, 'a-file');
    await writeFile(file, '');
    expectCleanFailure(await runCli(['restore', job, 'latest', '--to', file], { env: PASSWORD_ENV }), 2, /is not a folder/);
    expectCleanFailure(await runCli(['restore', job, 'latest', '--to', join(dir, 'x'), '--partition', '1'], { env: PASSWORD_ENV }), 2, /--partition: not for a file snapshot/);
    expectCleanFailure(await runCli(['restore', job, 'latest', '--to', join(dir, 'x'), '--overwrite', 'sometimes'], { env: PASSWORD_ENV }), 2, /overwrite/);
  }, 60_000);
});
