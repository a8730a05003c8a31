import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  CAIRN_BIN,
  EVERY_KIND,
  PASSWORD_ENV,
  REPO_ROOT,
  buildEveryKindTree,
  cairnOk,
  cliEnv,
  expectCleanFailure,
  init,
  runCli,
  runCommand,
  tempDir,
  useSuiteScope,
} from './utils/index.js';

/*
 * `cairn dump` of file snapshots made by the real `files` source: a file's bytes on stdout
 * (sha256 compared), a folder as a tar stream that `tar -x` turns back into the same tree
 * (compared with rsync).
 */

async function writeFilesJob(dir: string, paths: string[]): Promise<string> {
  const path = join(dir, 'files.json');
  const job = { name: 'dump', source: { type: 'files', paths }, compression: { type: 'zstd', level: 3 }, target: { type: 'local', path: './repo' }, password: { env: 'CAIRN_PASSWORD' } };
  await writeFile(path, JSON.stringify(job, null, 2) + '\n');
  return path;
}

/** Runs `cairn dump ...args`; its stdout goes to `sink` (a program reading stdin) or is hashed. */
function dump(args: string[], sink?: { command: string; args: string[] }): Promise<{ exitCode: number | null; sha256: string; bytes: number; stderr: string; sinkExit?: number | null }> {
  const cairn = spawn(process.execPath, [CAIRN_BIN, 'dump', ...args], { cwd: REPO_ROOT, env: cliEnv(PASSWORD_ENV), stdio: ['ignore', 'pipe', 'pipe'] });
  const hash = createHash('sha256');
  let bytes = 0;
  let stderr = '';
  cairn.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let sinkDone: Promise<number | null> | undefined;
  if (sink) {
    const reader = spawn(sink.command, sink.args, { stdio: ['pipe', 'inherit', 'pipe'] });
    reader.stderr.on('data', (d: Buffer) => (stderr += `[${sink.command}] ${d.toString()}`));
    cairn.stdout.pipe(reader.stdin);
    sinkDone = new Promise((resolve) => reader.on('close', resolve));
  } else {
    cairn.stdout.on('data', (d: Buffer) => {
      hash.update(d);
      bytes += d.length;
    });
  }
  return new Promise((resolve) =>
    cairn.on('close', async (exitCode) => {
      const sinkExit = sinkDone ? await sinkDone : undefined;
      resolve({ exitCode, sha256: hash.digest('hex'), bytes, stderr, ...(sinkDone && { sinkExit }) });
    }),
  );
}

const sha256Of = async (path: string | Buffer) => createHash('sha256').update(await readFile(path)).digest('hex');

describe('cairn dump of a file snapshot', () => {
  const scope = useSuiteScope();
  let dir: string;
  let original: string;
  let job: string;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-files-dump-');
    original = join(dir, 'orig');
    await mkdir(original);
    await buildEveryKindTree(original, { largeBytes: 12 * 1024 * 1024 + 5 });
    job = await writeFilesJob(dir, [original]);
    await init(job);
    await cairnOk('backup', job, ['--json']);
  }, 300_000);

  test('a file is its bytes, holes as zeros', async () => {
    for (const name of [EVERY_KIND.large, EVERY_KIND.sparse, EVERY_KIND.empty, EVERY_KIND.regular]) {
      const result = await dump([job, 'latest', join(original, name)]);
      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.sha256, name).toBe(await sha256Of(join(original, name)));
    }
  }, 120_000);

  test('a folder is a tar stream that tar -x turns into the same tree (rsync -aH --checksum sees no difference)', async () => {
    const out = join(dir, 'extracted');
    await mkdir(out);
    const result = await dump([job, 'latest', original], { command: 'tar', args: ['-x', '--numeric-owner', '-C', out] });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.sinkExit, result.stderr).toBe(0);
    const rsync = await runCommand('rsync', ['-aH', '--numeric-ids', '--checksum', '--dry-run', '--itemize-changes', '--delete', `${original}/`, `${join(out, 'orig')}/`]);
    expect(rsync.exitCode, rsync.stderr).toBe(0);
    expect(rsync.stdout.split('\n').filter((l) => l.trim() !== '')).toEqual([]);
  }, 120_000);

  test('a tar of the whole snapshot holds the backed-up paths from the root', async () => {
    const listing = await new Promise<string>((resolve) => {
      const cairn = spawn(process.execPath, [CAIRN_BIN, 'dump', job, 'latest', '/'], { cwd: REPO_ROOT, env: cliEnv(PASSWORD_ENV), stdio: ['ignore', 'pipe', 'inherit'] });
      const tar = spawn('tar', ['-t'], { stdio: ['pipe', 'pipe', 'inherit'] });
      cairn.stdout.pipe(tar.stdin);
      let text = '';
      tar.stdout.on('data', (d: Buffer) => (text += d.toString()));
      tar.on('close', () => resolve(text));
    });
    const names = listing.split('\n');
    expect(names[0]).toBe(original.split('/')[1] + '/');
    expect(names).toContain(`${original.slice(1)}/${EVERY_KIND.regular}`);
    expect(names).toContain(`${original.slice(1)}/${EVERY_KIND.longName}`);
  }, 120_000);

  test('refuses --json, a path the snapshot does not hold, and a relative path', async () => {
    const json = await runCli(['dump', job, 'latest', join(original, EVERY_KIND.regular), '--json'], { env: PASSWORD_ENV });
    expect(json.exitCode).toBe(2);
    expect(json.stdout).toBe('');
    expect(JSON.parse(json.stderr).error).toMatchObject({ code: 'CAIRN_USAGE', message: expect.stringMatching(/--json does not apply/) });
    expectCleanFailure(await runCli(['dump', job, 'latest', join(original, 'no-such-file')], { env: PASSWORD_ENV }), 2, /holds no/);
    expectCleanFailure(await runCli(['dump', job, 'latest', 'orig/regular.txt'], { env: PASSWORD_ENV }), 2, /must be absolute/);
  }, 60_000);
});
