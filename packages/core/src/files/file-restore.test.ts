import { chmod, link, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, truncate, writeFile, open } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createCore, type Core } from '../create-core.js';
import { TargetRegistry, type Logger } from '../services.js';
import { DamageError, UsageError } from '../errors.js';
import { MemoryTarget, sharedView } from '../testing/memory-target.js';
import { storeFolderSnapshot } from '../testing/file-snapshots.js';
import type { LoadedJob } from '../job/job-loader.js';
import { InitOperation } from '../operations/init.js';
import { RestoreOperation } from '../operations/restore.js';
import type { FileRestoreResult } from '../operations/file-restore.js';
import { Repositories } from '../repository/repositories.js';
import { PipelineWorkers } from '../operations/pipeline-workers.js';
import { tempName } from '../temp-names.js';
import type { FileRestoreOptions } from './file-restore.js';
import { loadPosix } from './posix.js';
import { TreeReader } from './tree-reader.js';
import { EntryVerifier } from './restore-verify.js';
import { isFileManifest } from '../repository/snapshot.js';

/*
 * Restores of file snapshots through the core's container, on the real file system: the
 * snapshots are stored by a small test writer (testing/file-snapshots.ts) from real folders,
 * so these tests do not depend on the file backup pipeline.
 */

const job: LoadedJob = {
  info: { name: 'files', file: '/jobs/files.json', job: {} },
  config: { name: 'files', source: { type: 'files' }, target: { type: 'memory' }, password: { env: 'PW' } },
  baseDir: '/jobs',
};

describe('file restore', () => {
  let dir: string;
  let source: string;
  let core: Core;
  let target: MemoryTarget;
  let warnings: string[];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-file-restore-'));
    source = join(dir, 'source');
    await mkdir(source);
    await writeFile(join(dir, 'plugins.json'), JSON.stringify({ plugins: [] }));
    warnings = [];
    const logger: Logger = { debug() {}, info() {}, warn: (m) => warnings.push(m), error: (m) => warnings.push(m) };
    core = await createCore({ pluginsFile: join(dir, 'plugins.json'), logger, env: { PW: 'pw' }, cwd: dir });
    target = new MemoryTarget();
    core.get<TargetRegistry>(TargetRegistry).register('memory', { create: async () => sharedView(target) });
    await core.get(InitOperation).run(job);
  });
  afterEach(async () => {
    await core.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  async function snapshot(): Promise<string> {
    const workers = core.get(PipelineWorkers);
    return workers.withPool((pool) =>
      core.get(Repositories).withRepository(job, async (repository) => {
        await workers.start(pool, repository, job, 'write');
        return (await storeFolderSnapshot(repository, pool, source)).id;
      }),
    );
  }

  async function restore(to: string, files: FileRestoreOptions = {}, ref = 'latest'): Promise<FileRestoreResult> {
    const { result } = await core.get(RestoreOperation).run(job, ref, to, {}, files);
    expect(result).toHaveProperty('kind', 'files');
    return result as FileRestoreResult;
  }

  /** Where the source folder lands below a restore folder. */
  const inside = (to: string, ...parts: string[]) => join(to, source, ...parts);

  it('restores content, holes, hard links, symlinks, FIFOs, modes, xattrs and times, and --verify finds them equal', async () => {
    const big = randomBytes(3 * 1024 * 1024 + 17);
    await writeFile(join(source, 'big'), big);
    const sparse = await open(join(source, 'sparse'), 'w');
    await sparse.write(Buffer.from('middle'), 0, 6, 5 * 1024 * 1024);
    await sparse.close();
    await truncate(join(source, 'sparse'), 16 * 1024 * 1024);
    await writeFile(join(source, 'empty'), '');
    await mkdir(join(source, 'sub'));
    await writeFile(join(source, 'sub', 'a'), 'linked');
    await link(join(source, 'sub', 'a'), join(source, 'b'));
    await symlink('sub/a', join(source, 'to-a'));
    execFileSync('mkfifo', [join(source, 'fifo')]);
    await chmod(join(source, 'big'), 0o640);
    execFileSync('setfattr', ['-n', 'user.note', '-v', 'kept', join(source, 'big')]);
    execFileSync('touch', ['-d', '2020-05-06 07:08:09.123456789', join(source, 'sub')]);
    const id = await snapshot();

    const to = join(dir, 'restored');
    const result = await restore(to, { verify: true });
    expect(result).toMatchObject({ snapshot: id, destination: to, skipped: 0, bytesWritten: big.length + 1024 * 1024 + 6 });
    expect(result.verified!.mismatches).toEqual([]);
    // Buffer.equals: a deep toEqual of megabytes takes vitest most of a minute.
    expect((await readFile(inside(to, 'big'))).equals(big)).toBe(true);
    expect((await stat(inside(to, 'big'))).mode & 0o7777).toBe(0o640);
    const restoredSparse = await stat(inside(to, 'sparse'));
    expect(restoredSparse.size).toBe(16 * 1024 * 1024);
    expect(restoredSparse.blocks * 512).toBeLessThanOrEqual(2 * 1024 * 1024);
    expect((await stat(inside(to, 'b'))).ino).toBe((await stat(inside(to, 'sub', 'a'))).ino);
    expect(await readlink(inside(to, 'to-a'))).toBe('sub/a');
    expect((await lstat(inside(to, 'fifo'))).isFIFO()).toBe(true);
    expect((await loadPosix()).listXattrs(inside(to, 'big'))).toEqual([{ name: 'user.note', value: Buffer.from('kept') }]);
    expect((await stat(inside(to, 'sub'), { bigint: true })).mtimeNs).toBe((await stat(join(source, 'sub'), { bigint: true })).mtimeNs);
    // The parents of the backed-up folder come with their metadata too.
    expect((await stat(join(to, dir))).mode).toBe((await stat(dir)).mode);
  });

  it('restores every file mode exactly, of small files (written natively) and large ones, whatever the umask', async () => {
    const modes = [0o644, 0o755, 0o600, 0o444, 0o000, 0o640, 0o604, 0o666, 0o777, 0o4755, 0o2750, 0o1644, 0o6711];
    for (const [k, mode] of modes.entries()) {
      // Every other file larger than a small file (2 MiB).
      await writeFile(join(source, mode.toString(8)), k % 2 === 0 ? `mode ${mode.toString(8)}` : Buffer.alloc(3 * 1024 * 1024, k));
      await chmod(join(source, mode.toString(8)), mode);
    }
    await snapshot();
    const modesAt = async (to: string) => Promise.all(modes.map(async (mode) => (await stat(inside(to, mode.toString(8)))).mode & 0o7777));

    expect(await modesAt(await restored('default umask'))).toEqual(modes);
    const previous = process.umask(0o077);
    try {
      expect(await modesAt(await restored('umask 077'))).toEqual(modes);
    } finally {
      process.umask(previous);
    }

    async function restored(name: string): Promise<string> {
      const to = join(dir, name);
      await restore(to);
      return to;
    }
  });

  it('restores a tree of more entries than one batch: hard links across batches, folder times set last, --verify over all', async () => {
    await mkdir(join(source, 'a'));
    await writeFile(join(source, 'a', 'first'), 'linked across batches');
    await mkdir(join(source, 'm'));
    // More entries than a batch (8192) between the two names of the hard link.
    await Promise.all(Array.from({ length: 9000 }, (_, i) => writeFile(join(source, 'm', `f${i}`), `file ${i}`)));
    await mkdir(join(source, 'z'));
    await link(join(source, 'a', 'first'), join(source, 'z', 'second'));
    for (const folder of ['a', 'm', 'z']) execFileSync('touch', ['-d', '2021-01-02 03:04:05.5', join(source, folder)]);
    await snapshot();

    const to = join(dir, 'restored');
    const result = await restore(to, { verify: true });
    expect(result.verified!.mismatches).toEqual([]);
    expect(result.verified!.entries).toBe(9000 + 5 + source.split('/').length - 1);
    expect((await stat(inside(to, 'z', 'second'))).ino).toBe((await stat(inside(to, 'a', 'first'))).ino);
    expect(await readFile(inside(to, 'm', 'f8999'), 'utf8')).toBe('file 8999');
    for (const folder of ['a', 'm', 'z']) expect((await stat(inside(to, folder))).mtimeMs).toBe((await stat(join(source, folder))).mtimeMs);
  });

  it('restores one file or one folder chosen by pattern, with the folders above it, and leaves out excluded paths', async () => {
    await mkdir(join(source, 'docs', 'old'), { recursive: true });
    await writeFile(join(source, 'docs', 'a.txt'), 'a');
    await writeFile(join(source, 'docs', 'b.md'), 'b');
    await writeFile(join(source, 'docs', 'old', 'c.txt'), 'c');
    await writeFile(join(source, 'other.txt'), 'other');
    await snapshot();

    const one = join(dir, 'one');
    const result = await restore(one, { include: [join(source, 'docs', 'a.txt')] });
    expect(await readdir(inside(one))).toEqual(['docs']);
    expect(await readdir(inside(one, 'docs'))).toEqual(['a.txt']);
    expect(result.restored).toBe(1 + source.split('/').length);

    const folder = join(dir, 'folder');
    await restore(folder, { include: [join(source, 'docs')], exclude: ['*.md'] });
    expect((await readdir(inside(folder, 'docs'))).sort()).toEqual(['a.txt', 'old']);
    expect(await readdir(inside(folder, 'docs', 'old'))).toEqual(['c.txt']);

    const texts = join(dir, 'texts');
    await restore(texts, { include: ['*.txt'], exclude: ['old/'] });
    expect((await readdir(inside(texts))).sort()).toEqual(['docs', 'other.txt']);
    expect(await readdir(inside(texts, 'docs'))).toEqual(['a.txt']);

    await expect(restore(join(dir, 'none'), { include: ['/no/such/path'] })).rejects.toThrow(UsageError);
  });

  it('--overwrite: if-changed keeps files that match and replaces the rest, never keeps everything, always replaces everything', async () => {
    await writeFile(join(source, 'same'), 'same content');
    await writeFile(join(source, 'edited'), 'original content');
    const id = await snapshot();
    const to = join(dir, 'restored');
    await restore(to);
    const sameInode = (await stat(inside(to, 'same'))).ino;
    await writeFile(inside(to, 'edited'), 'edited content!!');

    const never = await restore(to, { overwrite: 'never', verify: true });
    expect(never).toMatchObject({ restored: 0, skipped: 2 });
    expect(await readFile(inside(to, 'edited'), 'utf8')).toBe('edited content!!');
    // --verify checks what this restore wrote or found unchanged: kept files are the user's.
    expect(never.verified).toEqual({ entries: source.split('/').length - 1, mismatches: [] });

    const ifChanged = await restore(to, { verify: true }, id);
    expect(ifChanged).toMatchObject({ restored: 1, unchanged: source.split('/').length, skipped: 0 });
    expect(ifChanged.verified!.mismatches).toEqual([]);
    expect(await readFile(inside(to, 'edited'), 'utf8')).toBe('original content');
    expect((await stat(inside(to, 'same'))).ino).toBe(sameInode);

    const always = await restore(to, { overwrite: 'always' });
    expect(always.restored).toBe(2);
    expect((await stat(inside(to, 'same'))).ino).not.toBe(sameInode);
  });

  it('the verifier reports content, mode and time that differ from the snapshot', async () => {
    await writeFile(join(source, 'file'), 'snapshot content');
    await snapshot();
    const to = join(dir, 'restored');
    await restore(to);
    const restored = inside(to, 'file');
    const problems = async () => {
      const workers = core.get(PipelineWorkers);
      return workers.withPool((pool) =>
        core.get(Repositories).withRepository(job, async (repository) => {
          const index = await workers.prepare(pool, repository, job, 'read');
          const { manifest } = await repository.resolveSnapshot('latest');
          if (!isFileManifest(manifest)) throw new Error('not a file snapshot');
          const entry = await new TreeReader(repository, index, pool).lookup(manifest, join(source, 'file'));
          return new EntryVerifier(pool, await loadPosix(), manifest.chunker.max, true).problems(Buffer.from(restored), entry!);
        }),
      );
    };
    expect(await problems()).toEqual([]);
    const { mtimeNs } = await stat(restored, { bigint: true });
    await writeFile(restored, 'changed content!');
    await chmod(restored, 0o600);
    expect(await problems()).toEqual([
      expect.stringMatching(/^mode 600, the snapshot has 6[0-7][0-7]$/),
      expect.stringMatching(new RegExp(`^mtime \\d+ ns, the snapshot has ${mtimeNs}$`)),
      'the bytes at 0 (16) differ from the snapshot\'s',
    ]);
  });

  it('removes the temporary files a killed restore left, and never shows a temporary file under a real name', async () => {
    await writeFile(join(source, 'file'), 'content');
    await snapshot();
    const to = join(dir, 'restored');
    await restore(to);
    // A restore killed while writing: its process (a pid that is gone) left a temporary file.
    const gone = 2 ** 22 + 12345;
    const leftover = inside(to, tempName(gone));
    await writeFile(leftover, 'half');
    const running = inside(to, tempName(process.pid));
    await writeFile(running, 'in progress');
    await restore(to);
    const names = await readdir(inside(to));
    expect(names).not.toContain(leftover.split('/').pop());
    expect(names).toContain(running.split('/').pop());
  });

  it('names the file whose blob is damaged (DamageError) and leaves no file under its real name', async () => {
    await writeFile(join(source, 'victim'), randomBytes(200_000));
    await snapshot();
    for await (const object of target.list('data/')) {
      const bytes = await target.get(object.key);
      bytes[40]! ^= 1;
      await target.put(object.key, bytes);
    }
    const to = join(dir, 'restored');
    const error = await restore(to).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DamageError);
    expect((error as Error).message).toContain(`${inside(to, 'victim')} cannot be restored`);
    expect(await readdir(inside(to)).catch(() => [])).toEqual([]);
  });

  it('refuses an existing file as destination and the image options', async () => {
    await writeFile(join(source, 'file'), 'content');
    await snapshot();
    await writeFile(join(dir, 'a-file'), '');
    await expect(restore(join(dir, 'a-file'))).rejects.toThrow(/is not a folder/);
    await expect(core.get(RestoreOperation).run(job, 'latest', join(dir, 'x'), { partition: 1 }, {})).rejects.toThrow(/--partition: not for a file snapshot/);
    await expect(core.get(RestoreOperation).run(job, 'latest', join(dir, 'x'))).rejects.toThrow(/is a file snapshot/);
  });
});
