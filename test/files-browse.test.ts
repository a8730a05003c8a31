import { chmod, mkdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { holdRepositoryLock, writeFileSnapshots, type NodeSpec } from '@cairn/core/testing';
import { MiB, PASSWORD_ENV, REPO_ROOT, backup, expectCleanFailure, expectSuccess, init, parseJson, randomBytesFor, run as runTool, runCli, tempDir, useSuiteScope, writeJob } from './utils/index.js';

/*
 * cairn ls, find and diff through the real CLI, and file snapshots in `snapshots` and `show`:
 * three file snapshots of a known home folder (built by hand into the job's repository: every
 * kind of entry, names that are not UTF-8 or hold a newline, a folder that could not be read),
 * changed in known ways between them, plus a volume snapshot of the same job, which the
 * browsing commands refuse.
 */

const BAD = Buffer.from('bad\xff.txt', 'latin1');

function docs(version: number): Record<string, NodeSpec> {
  return {
    'a.txt': { content: version === 1 ? 'alpha' : 'alpha, edited', uid: 1000, gid: 1000, user: 'u', group: 'u' },
    'b.txt': { content: 'bravo', mode: version === 1 ? 0o644 : 0o600 },
    ...(version === 1 ? { 'old.txt': { content: 'old text' } } : { 'new.txt': { content: 'brand new' }, newdir: { children: { 'x.txt': { content: 'x' } } } }),
    ...(version === 3 && { 'c.txt': { content: 'charlie', xattrs: { 'user.note': 'hello' } } }),
    sub: { children: { 'deep.txt': { content: 'deep' } } },
  };
}

function home(version: number): Record<string, NodeSpec> {
  const u: Record<string, NodeSpec> = {
    bad: { nameBytes: BAD, content: 'not utf-8', uid: 4242, gid: 4242 },
    docs: { children: docs(version), uid: 1000, gid: 1000, user: 'u', group: 'u', mtime: version === 1 ? undefined : '2026-11-11T01:00:00Z' },
    fifo: { type: 'fifo' },
    'line\nbreak': { content: 'x' },
    link: { type: 'symlink', target: 'docs/a.txt' },
    locked: { type: 'dir', mode: 0o700, error: 'EACCES (permission denied)' },
    null: { type: 'chardev', rdev: 0x103n, mode: 0o666 },
    tmp: { children: {}, mode: 0o1777 },
    tool: { content: '#!/bin/sh\n', mode: 0o4755 },
  };
  return { home: { children: { u: { children: u } } } };
}

describe('browsing file snapshots: ls, find, diff', () => {
  const scope = useSuiteScope();
  let job: string;
  let files: string[];
  let volume: string;
  const run = (args: string[]) => runCli(args, { env: { ...PASSWORD_ENV, TZ: 'UTC' } });
  const ok = async (args: string[]) => {
    const result = await run(args);
    expectSuccess(result);
    return result;
  };

  beforeAll(async () => {
    const dir = await tempDir(scope, 'cairn-browse-');
    await writeFile(join(dir, 'disk.img'), randomBytesFor('browse-volume', 2 * MiB));
    job = await writeJob(dir, { name: 'mixed', source: './disk.img' });
    await init(job);
    files = await writeFileSnapshots({
      job,
      pluginsFile: join(REPO_ROOT, 'plugins.json'),
      env: PASSWORD_ENV,
      snapshots: [1, 2, 3].map((version) => ({ job: 'mixed', time: `2026-11-1${version}T02:00:00.000Z`, root: home(version), paths: ['/home/u'] })),
    });
    // The job's newest snapshot is a volume image: `latest` of ls/find/diff is the newest file snapshot.
    volume = (await backup(job)).snapshot;
  });

  test('ls lists a folder like ls -l: modes with setuid and sticky, owners by name or number, devices, links, escaped names', async () => {
    const { stdout } = await ok(['ls', job, 'latest', '/home/u']);
    const time = '2026-11-01 00:00:00';
    expect(stdout).toBe(
      [
        `-rw-r--r-- 1 4242 4242    9 ${time} bad\\xff.txt`,
        `drwxr-xr-x 2 u    u       0 2026-11-11 01:00:00 docs`,
        `prw-r--r-- 1 root root    0 ${time} fifo`,
        `-rw-r--r-- 1 root root    1 ${time} line\\nbreak`,
        `lrwxrwxrwx 1 root root   10 ${time} link -> docs/a.txt`,
        `drwx------ 2 root root    0 ${time} locked  [incomplete: EACCES (permission denied)]`,
        `crw-rw-rw- 1 root root 1, 3 ${time} null`,
        `drwxrwxrwt 2 root root    0 ${time} tmp`,
        `-rwsr-xr-x 1 root root   10 ${time} tool`,
        '',
      ].join('\n'),
    );
    // The root holds the top folder of the backed-up path; a file lists itself, by its path.
    expect((await ok(['ls', job, files[0]!])).stdout).toBe(`drwxr-xr-x 2 root root 0 2026-11-01 00:00:00 home\n`);
    expect((await ok(['ls', job, files[0]!.slice(0, 10), 'home/u/docs/old.txt'])).stdout).toBe(`-rw-r--r-- 1 root root 8 2026-11-01 00:00:00 /home/u/docs/old.txt\n`);
  });

  test('ls --recursive gives full paths, depth first in name order', async () => {
    const { stdout } = await ok(['ls', job, 'latest', '/home/u/docs', '--recursive']);
    const paths = stdout.trimEnd().split('\n').map((line) => line.split(' ').at(-1));
    expect(paths).toEqual(['/home/u/docs/a.txt', '/home/u/docs/b.txt', '/home/u/docs/c.txt', '/home/u/docs/new.txt', '/home/u/docs/newdir', '/home/u/docs/newdir/x.txt', '/home/u/docs/sub', '/home/u/docs/sub/deep.txt']);
  });

  test('ls --json: one array, every field, exact bytes of names that are not UTF-8', async () => {
    const entries = parseJson<any[]>(await ok(['ls', job, 'latest', '/home/u', '--json']));
    expect(entries.map((e) => e.name)).toEqual(['bad\ufffd.txt', 'docs', 'fifo', 'line\nbreak', 'link', 'locked', 'null', 'tmp', 'tool']);
    const [bad, docsEntry, , , link, locked, nul, , tool] = entries;
    expect(Buffer.from(bad.nameBytes, 'base64')).toEqual(BAD);
    expect(Buffer.from(bad.pathBytes, 'base64')).toEqual(Buffer.concat([Buffer.from('/home/u/'), BAD]));
    expect(bad).toMatchObject({ type: 'file', size: 9, uid: 4242, gid: 4242, mtime: '2026-11-01T00:00:00.000000000Z' });
    expect(bad.user).toBeUndefined();
    expect(docsEntry).toMatchObject({ path: '/home/u/docs', type: 'dir', mode: 0o755, permissions: 'drwxr-xr-x', user: 'u', group: 'u', links: 2 });
    expect(link).toMatchObject({ type: 'symlink', target: 'docs/a.txt', size: 10 });
    expect(locked).toMatchObject({ type: 'dir', error: 'EACCES (permission denied)' });
    expect(nul).toMatchObject({ type: 'chardev', device: { major: 1, minor: 3 }, permissions: 'crw-rw-rw-' });
    expect(tool).toMatchObject({ mode: 0o4755, permissions: '-rwsr-xr-x', user: 'root', group: 'root' });
    expect(Object.keys(tool).sort()).toEqual(['atime', 'ctime', 'gid', 'group', 'inode', 'links', 'mode', 'mtime', 'name', 'path', 'permissions', 'size', 'type', 'uid', 'user'].sort());
    const c = parseJson<any[]>(await ok(['ls', job, 'latest', '/home/u/docs/c.txt', '--json']));
    expect(c).toEqual([expect.objectContaining({ path: '/home/u/docs/c.txt', xattrs: ['user.note'] })]);
  });

  test('ls of a path the snapshot does not hold is exit 1; of a volume snapshot exit 2', async () => {
    expectCleanFailure(await run(['ls', job, files[0]!, '/home/u/docs/new.txt']), 1, new RegExp(`Snapshot ${files[0]!.slice(0, 8)} has no /home/u/docs/new.txt \\(it holds /home/u\\)`));
    expectCleanFailure(await run(['ls', job, 'latest', '/home/u/../etc']), 2, /cannot contain "\.\."/);
    expectCleanFailure(await run(['ls', job, volume]), 2, /is a volume image snapshot .*cairn ls needs a file snapshot/);
    // A folder that could not be read is listed empty, with a warning saying why.
    const locked = await ok(['ls', job, 'latest', '/home/u/locked']);
    expect(locked.stdout).toBe('');
    expect(locked.stderr).toMatch(/\/home\/u\/locked could not be read when it was backed up \(EACCES \(permission denied\)\)/);
  });

  test('find across three snapshots: one line per path and content, with the snapshots holding it', async () => {
    const { stdout } = await ok(['find', job, '*.txt']);
    const short = files.map((id) => id.slice(0, 8));
    const lines = stdout.trimEnd().split('\n');
    expect(lines).toEqual([
      expect.stringMatching(new RegExp(`^ +9 B  2026-11-01 00:00:00  /home/u/bad\\\\xff\\.txt  \\(in all 3 snapshots: ${short.join(', ')}\\)$`)),
      expect.stringMatching(new RegExp(`^ +5 B  .*  /home/u/docs/a\\.txt  \\(in 1 of 3 snapshots: ${short[0]}\\)$`)),
      expect.stringMatching(new RegExp(`^ +13 B  .*  /home/u/docs/a\\.txt  \\(in 2 of 3 snapshots: ${short[1]}, ${short[2]}\\)$`)),
      expect.stringMatching(/ \/home\/u\/docs\/b\.txt  \(in all 3 snapshots/),
      expect.stringMatching(new RegExp(` /home/u/docs/c\\.txt  \\(in 1 of 3 snapshots: ${short[2]}\\)$`)),
      expect.stringMatching(/ \/home\/u\/docs\/new\.txt  \(in 2 of 3/),
      expect.stringMatching(/ \/home\/u\/docs\/newdir\/x\.txt  \(in 2 of 3/),
      expect.stringMatching(/ \/home\/u\/docs\/old\.txt  \(in 1 of 3/),
      expect.stringMatching(/ \/home\/u\/docs\/sub\/deep\.txt  \(in all 3/),
      '9 version(s) of 8 path(s) in 3 snapshot(s)',
    ]);
    // A path pattern, limited to chosen snapshots, without case.
    const limited = parseJson<any[]>(await ok(['find', job, 'DOCS/*.TXT', '-i', '--snapshot', files[0]!.slice(0, 8), '--snapshot', files[1]!, '--json']));
    expect(limited.map((v) => [v.path, v.snapshots.map((id: string) => files.indexOf(id))])).toEqual([
      ['/home/u/docs/a.txt', [0]],
      ['/home/u/docs/a.txt', [1]],
      ['/home/u/docs/b.txt', [0, 1]],
      ['/home/u/docs/new.txt', [1]],
      ['/home/u/docs/old.txt', [0]],
    ]);
    expect(limited[2]).toMatchObject({ size: 5, mode: 0o600, firstTime: '2026-11-11T02:00:00.000Z', lastTime: '2026-11-12T02:00:00.000Z' });
    expect((await ok(['find', job, 'nothing-like-this'])).stdout).toBe('0 version(s) of 0 path(s) in 3 snapshot(s)\n');
  });

  test('find refuses a volume snapshot and a broken pattern', async () => {
    expectCleanFailure(await run(['find', job, '*', '--snapshot', volume]), 2, /is a volume image snapshot/);
    expectCleanFailure(await run(['find', job, '[abc']), 2, /without its "\]"/);
  });

  test('diff: added, removed, modified and metadata-only paths, a summary, and --json', async () => {
    const { stdout } = await ok(['diff', job, files[0]!, files[2]!]);
    expect(stdout).toBe(
      [
        `comparing snapshot ${files[0]!.slice(0, 8)} (2026-11-11T02:00:00.000Z) to ${files[2]!.slice(0, 8)} (2026-11-13T02:00:00.000Z):`,
        '',
        'U    /home/u/docs/  (mtime)',
        'M    /home/u/docs/a.txt  (content)',
        'U    /home/u/docs/b.txt  (mode)',
        '+    /home/u/docs/c.txt',
        '+    /home/u/docs/new.txt',
        '+    /home/u/docs/newdir/',
        '+    /home/u/docs/newdir/x.txt',
        '-    /home/u/docs/old.txt',
        '',
        '4 added (3 files, 1 dir), 1 removed (1 file), 1 modified, 2 metadata only; 30 B added, 13 B removed',
        '',
      ].join('\n'),
    );
    const json = parseJson(await ok(['diff', job, files[1]!.slice(0, 6), 'latest', '--json']));
    expect(json.older).toEqual({ id: files[1], time: '2026-11-12T02:00:00.000Z', paths: ['/home/u'] });
    expect(json.newer.id).toBe(files[2]);
    expect(json.changes).toEqual([{ path: '/home/u/docs/c.txt', change: '+', type: 'file' }]);
    expect(json.summary).toEqual({ added: { files: 1, dirs: 0, others: 0 }, removed: { files: 0, dirs: 0, others: 0 }, modified: 0, metadataOnly: 0, bytesAdded: 7, bytesRemoved: 0 });
    expect((await ok(['diff', job, 'latest', 'latest'])).stdout).toMatch(/:\n\n0 added, 0 removed, 0 modified, 0 metadata only; 0 B added, 0 B removed\n$/);
    expectCleanFailure(await run(['diff', job, files[0]!, volume]), 2, /is a volume image snapshot .*cairn diff needs a file snapshot/);
  });

  test('ls, find and diff take a shared lock: an exclusive one (repair) makes them exit 11', async () => {
    const lock = await holdRepositoryLock({ job, pluginsFile: join(REPO_ROOT, 'plugins.json'), env: PASSWORD_ENV, operation: 'repair', exclusive: true });
    try {
      for (const args of [['ls', job, 'latest'], ['find', job, '*'], ['diff', job, files[0]!, files[1]!]]) expectCleanFailure(await run(args), 11, /repair/);
    } finally {
      await lock.dispose();
    }
  });

  test('snapshots shows the kind and the paths; show describes a file snapshot', async () => {
    const { stdout } = await ok(['snapshots', job]);
    const lines = stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID +TIME +HOST +KIND +SIZE +SOURCE/);
    expect(lines.slice(1).map((line) => line.split(/ {2,}/).slice(3))).toEqual([
      ['files', expect.any(String), '/home/u'],
      ['files', expect.any(String), '/home/u'],
      ['files', expect.any(String), '/home/u'],
      ['volume', '2.0 MiB', expect.stringMatching(/disk\.img$/)],
    ]);
    const rows = parseJson<any[]>(await ok(['snapshots', job, '--json']));
    expect(rows.map((r) => [r.kind, r.paths])).toEqual([['files', ['/home/u']], ['files', ['/home/u']], ['files', ['/home/u']], ['volume', undefined]]);
    const show = (await ok(['show', job, files[2]!])).stdout;
    expect(show).toContain(`snapshot   ${files[2]}\n`);
    expect(show).toMatch(/^kind       files/m);
    expect(show).toMatch(/^paths      \/home\/u$/m);
    expect(show).toMatch(/^chunker    fastcdc min 512\.0 KiB, avg 1\.0 MiB, max 8\.0 MiB$/m);
    expect(parseJson(await ok(['show', job, files[2]!, '--json']))).toMatchObject({ id: files[2], kind: 'files', paths: ['/home/u'] });
  });
});

/*
 * The same commands against real backups by the `files` source: a tree on disk with every kind
 * of entry, backed up three times with known changes between. `ls` is checked against GNU
 * `ls -l` of the tree itself (mode, links, owner, group, size, time), field by field.
 */
describe('browsing real file backups', () => {
  const scope = useSuiteScope();
  let data: string;
  let job: string;
  const ids: string[] = [];
  const env = { ...PASSWORD_ENV, TZ: 'UTC' };
  const ok = async (args: string[]) => {
    const result = await runCli(args, { env });
    expectSuccess(result);
    return result;
  };

  beforeAll(async () => {
    const dir = await tempDir(scope, 'cairn-browse-real-');
    data = join(dir, 'data');
    await mkdir(join(data, 'docs/sub'), { recursive: true });
    await mkdir(join(data, 'tmp'));
    await chmod(join(data, 'tmp'), 0o1777);
    await writeFile(join(data, 'docs/a.txt'), 'alpha');
    await writeFile(join(data, 'docs/b.txt'), 'bravo');
    await writeFile(join(data, 'docs/old.txt'), 'old text');
    await writeFile(join(data, 'docs/sub/deep.txt'), 'deep');
    await writeFile(join(data, 'big.bin'), randomBytesFor('browse-big', 3 * MiB));
    await writeFile(join(data, 'tool'), '#!/bin/sh\n');
    await chmod(join(data, 'tool'), 0o4755);
    await writeFile(Buffer.from(`${data}/bad\xff.txt`, 'latin1'), 'x');
    await writeFile(join(data, 'line\nbreak'), 'y');
    await symlink('docs/a.txt', join(data, 'link'));
    await runTool('mkfifo', [join(data, 'fifo')]);
    await runTool('mknod', [join(data, 'null'), 'c', '1', '3']);
    job = await writeJob(dir, { name: 'real', source: 'unused', extra: { source: { type: 'files', paths: ['./data'] } } });
    await init(job);
    ids.push((await backup(job, { env })).snapshot);

    await writeFile(join(data, 'docs/a.txt'), 'alpha, edited');
    await chmod(join(data, 'docs/b.txt'), 0o600);
    await rm(join(data, 'docs/old.txt'));
    await writeFile(join(data, 'docs/new.txt'), 'brand new');
    await mkdir(join(data, 'docs/newdir'));
    await writeFile(join(data, 'docs/newdir/x.txt'), 'x');
    await runTool('setfattr', ['-n', 'user.note', '-v', 'hello', join(data, 'tool')]);
    ids.push((await backup(job, { env })).snapshot);

    await utimes(join(data, 'docs/b.txt'), new Date('2026-01-02T03:04:05Z'), new Date('2026-01-02T03:04:05Z'));
    ids.push((await backup(job, { env })).snapshot);
  });

  test('ls -l agrees with GNU ls -l of the tree, field by field', async () => {
    const ours = (await ok(['ls', job, ids[2]!, data])).stdout.trimEnd().split('\n');
    const gnu = (await runTool('ls', ['-l', '-A', '-b', '--time-style=+%Y-%m-%d %H:%M:%S', data], { env: { ...process.env, TZ: 'UTC', LC_ALL: 'C' } })).trimEnd().split('\n').slice(1);
    expect(ours).toHaveLength(gnu.length);
    for (const [i, line] of ours.entries()) {
      const mine = line.split(/ +/).slice(0, 7);
      const theirs = gnu[i]!.split(/ +/).slice(0, 7);
      theirs[0] = theirs[0]!.replace(/[.+]$/, '');
      // Folders are stored without a size (GNU ls shows the directory file's blocks).
      if (mine[0]!.startsWith('d')) theirs[4] = '0';
      expect(mine, `line ${i}: ${line}`).toEqual(theirs);
    }
    expect(ours.map((line) => line.slice(line.indexOf(':') + 7))).toEqual(['bad\\xff.txt', 'big.bin', 'docs', 'fifo', 'line\\nbreak', 'link -> docs/a.txt', 'null', 'tmp', 'tool']);
    const [tool] = parseJson<any[]>(await ok(['ls', job, 'latest', `${data}/tool`, '--json']));
    expect(tool).toMatchObject({ permissions: '-rwsr-xr-x', xattrs: ['user.note'], size: 10 });
  });

  test('find across the three backups groups unchanged files into one line', async () => {
    const versions = parseJson<any[]>(await ok(['find', job, 'docs/**/*.txt', '--json']));
    const rows = versions.map((v) => [v.path.slice(data.length), v.snapshots.map((id: string) => ids.indexOf(id))]);
    expect(rows).toEqual([
      ['/docs/a.txt', [0]],
      ['/docs/a.txt', [1, 2]],
      ['/docs/b.txt', [0, 1, 2]],
      ['/docs/new.txt', [1, 2]],
      ['/docs/newdir/x.txt', [1, 2]],
      ['/docs/old.txt', [0]],
      ['/docs/sub/deep.txt', [0, 1, 2]],
    ]);
    const big = parseJson<any[]>(await ok(['find', job, 'big.bin', '--json']));
    expect(big).toEqual([expect.objectContaining({ size: 3 * MiB, snapshots: ids })]);
  });

  test('diff between real backups: every change under the backed-up folder, exactly', async () => {
    const changes = async (a: string, b: string) => {
      const { changes: all } = parseJson(await ok(['diff', job, a, b, '--json']));
      // The folders above it (the temporary folder, /tmp) change as other programs work.
      return all.filter((c: any) => c.path.startsWith(`${data}/`)).map((c: any) => [c.change, c.path.slice(data.length), c.what]);
    };
    expect(await changes(ids[0]!, ids[1]!)).toEqual([
      ['U', '/docs', ['mtime']],
      ['M', '/docs/a.txt', ['content', 'mtime']],
      ['U', '/docs/b.txt', ['mode']],
      ['+', '/docs/new.txt', undefined],
      ['+', '/docs/newdir', undefined],
      ['+', '/docs/newdir/x.txt', undefined],
      ['-', '/docs/old.txt', undefined],
      ['U', '/tool', ['xattrs']],
    ]);
    expect(await changes(ids[1]!, ids[2]!)).toEqual([['U', '/docs/b.txt', ['mtime']]]);
  });
});
