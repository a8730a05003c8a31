import { execFileSync } from 'node:child_process';
import { constants, lstatSync } from 'node:fs';
import { chmod, link, mkdir, mkdtemp, rm, symlink, truncate, writeFile, open as openFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UsageError, loadPosix, type FileMetadata, type OpenedFileTree } from '@cairn/core';
import { FilesSourceFactory } from './files-source.js';
import { FileTree, joinPath } from './file-tree.js';
import type { WalkOptions } from './settings.js';

const sh = (command: string, ...args: string[]): string => execFileSync(command, args, { encoding: 'utf8' });
const factory = new FilesSourceFactory();
let dir: string;
const at = (...parts: string[]): string => path.join(dir, ...parts);
const cleanups: Array<() => Promise<void> | void> = [];

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cairn-files-'));
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await rm(dir, { recursive: true, force: true });
});

function openTree(settings: Record<string, unknown>, baseDir = dir): Promise<OpenedFileTree> {
  return factory.open({ type: 'files', ...settings }, { baseDir });
}

/** Creates files (content string) and folders (names ending in /) below `dir`. */
async function makeTree(entries: Record<string, string>): Promise<void> {
  for (const [name, content] of Object.entries(entries)) {
    if (name.endsWith('/')) await mkdir(at(name), { recursive: true });
    else {
      await mkdir(path.dirname(at(name)), { recursive: true });
      await writeFile(at(name), content);
    }
  }
}

/** Every path the tree includes below its roots, relative to `dir`, folders with a trailing /; plus the problems. */
async function walk(tree: OpenedFileTree): Promise<{ paths: string[]; problems: string[] }> {
  const paths: string[] = [];
  const problems: string[] = [];
  const visit = async (folder: Buffer, metadata: FileMetadata): Promise<void> => {
    const listing = await tree.list(folder, metadata);
    for (const p of listing.problems) problems.push(`${relativeName(joinPath(folder, p.name))}: ${p.kind} (${p.reason})`);
    for (const entry of listing.entries) {
      const child = joinPath(folder, entry.name);
      paths.push(relativeName(child) + (entry.metadata.type === 'dir' ? '/' : ''));
      if (entry.metadata.type === 'dir') await visit(child, entry.metadata);
    }
  };
  for (const root of tree.roots) {
    const metadata = await tree.stat(root);
    if (metadata.type === 'dir') await visit(root, metadata);
  }
  return { paths: paths.sort(), problems: problems.sort() };
}

const relativeName = (p: Buffer): string => path.relative(dir, p.toString('latin1'));

describe('roots', () => {
  it('resolves relative paths against the job file folder, drops duplicates and paths inside others', async () => {
    await makeTree({ 'a/x/': '', 'b/': '', 'c': 'c' });
    const tree = await openTree({ paths: ['a', 'b', './a/x', `${dir}/b/`, 'c'] });
    expect(tree.kind).toBe('files');
    expect(tree.roots.map((r) => r.toString())).toEqual([at('a'), at('b'), at('c')]);
    expect(tree.path).toBe([at('a'), at('b'), at('c')].join(', '));
    expect(tree.warnings).toEqual([`${at('a/x')} is inside ${at('a')}, which is backed up whole: it is listed once`]);
  });

  it('refuses a path that does not exist, naming it', async () => {
    await makeTree({ 'a/': '' });
    const error = await openTree({ paths: ['a', 'missing'] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UsageError);
    expect((error as Error).message).toBe(`source.paths: ${at('missing')} does not exist`);
    await expect(openTree({ paths: [] })).rejects.toThrow(/non-empty list/);
  });

  it('/ as a root: children joined without a double slash, patterns anchored at /', async () => {
    const tree = await openTree({ paths: ['/'], exclude: ['/tmp', 'e?c'] });
    expect(tree.roots).toEqual([Buffer.from('/')]);
    const listing = await tree.list(Buffer.from('/'), await tree.stat(Buffer.from('/')));
    const names = listing.entries.map((e) => e.name.toString());
    expect(names).toContain('usr');
    expect(names).not.toContain('tmp');
    expect(names).not.toContain('etc');
    const usr = listing.entries.find((e) => e.name.toString() === 'usr')!;
    expect(usr.metadata.inode).toBe(lstatSync('/usr', { bigint: true }).ino);
  });

  it('a single file as a root', async () => {
    await makeTree({ 'f.txt': 'hello' });
    const tree = await openTree({ paths: ['f.txt'] });
    expect(await tree.stat(tree.roots[0]!)).toMatchObject({ type: 'file', size: 5 });
    expect(await walk(tree)).toEqual({ paths: [], problems: [] });
  });
});

describe('metadata', () => {
  it('reads every kind of entry with its metadata', async () => {
    await makeTree({ 'd/file': 'content', 'd/sub/': '' });
    await chmod(at('d/file'), 0o4755);
    await link(at('d/file'), at('d/hard'));
    await symlink('file', at('d/link'));
    await symlink('/nowhere/at/all', at('d/dangling'));
    const posix = await loadPosix();
    posix.mknod(at('d/null'), constants.S_IFCHR | 0o666, 0x103n);
    posix.mknod(at('d/loop'), constants.S_IFBLK | 0o660, 0x707n);
    posix.mknod(at('d/fifo'), constants.S_IFIFO | 0o644, 0n);
    sh('setfattr', '-n', 'user.note', '-v', 'hello', at('d/file'));
    sh('setfacl', '-m', 'u:1234:rwx', at('d/sub'));
    posix.setTimes(at('d/file'), 1_000_000_000_123_456_789n, 1_100_000_000_987_654_321n);
    const tree = await openTree({ paths: ['d'] });
    const listing = await tree.list(tree.roots[0]!, await tree.stat(tree.roots[0]!));
    const byName = new Map(listing.entries.map((e) => [e.name.toString(), e.metadata]));
    const stats = lstatSync(at('d/file'), { bigint: true });
    expect(byName.get('file')).toEqual({
      type: 'file', mode: 0o4755, uid: 0, gid: 0, user: 'root', group: 'root',
      mtimeNs: 1_100_000_000_987_654_321n, atimeNs: 1_000_000_000_123_456_789n, ctimeNs: stats.ctimeNs,
      size: 7, inode: stats.ino, device: stats.dev, links: 2,
      xattrs: [{ name: 'user.note', value: Buffer.from('hello') }],
    });
    expect(byName.get('hard')).toMatchObject({ inode: stats.ino, links: 2 });
    expect(byName.get('link')).toMatchObject({ type: 'symlink', target: Buffer.from('file'), size: 4 });
    expect(byName.get('dangling')).toMatchObject({ type: 'symlink', target: Buffer.from('/nowhere/at/all') });
    expect(byName.get('null')).toMatchObject({ type: 'chardev', rdev: 0x103n, size: 0 });
    expect(byName.get('loop')).toMatchObject({ type: 'blockdev', rdev: 0x707n });
    expect(byName.get('fifo')).toMatchObject({ type: 'fifo', mode: 0o644 & ~process.umask() });
    expect(byName.get('sub')?.type).toBe('dir');
    expect(byName.get('sub')?.xattrs?.map((x) => x.name)).toEqual(['system.posix_acl_access']);
    expect(byName.size).toBe(8);
    expect(listing.problems).toEqual([]);
  });

  it('skips sockets with a note', async () => {
    await makeTree({ 'd/plain': '' });
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(at('d/sock'), resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const tree = await openTree({ paths: ['d'] });
    expect(await walk(tree)).toEqual({ paths: ['d/plain'], problems: ['d/sock: skipped (a socket)'] });
  });

  it('keeps names that are not UTF-8, byte for byte', async () => {
    await makeTree({ 'd/': '' });
    const odd = Buffer.from([0x66, 0xff, 0x80, 0x2e, 0x74, 0x6d, 0x70]); // f\xff\x80.tmp
    const keep = Buffer.from([0x6b, 0xe9]); // k\xe9 (latin-1 é)
    await writeFile(joinPath(Buffer.from(at('d')), odd), 'x');
    await mkdir(joinPath(Buffer.from(at('d')), keep));
    const tree = await openTree({ paths: ['d'] });
    const names = (await tree.list(tree.roots[0]!, await tree.stat(tree.roots[0]!))).entries.map((e) => e.name);
    expect(names.sort(Buffer.compare)).toEqual([odd, keep].sort(Buffer.compare));
    const excluding = await openTree({ paths: ['d'], exclude: ['f??.tmp'] });
    const left = (await excluding.list(excluding.roots[0]!, await excluding.stat(excluding.roots[0]!))).entries.map((e) => e.name);
    expect(left).toEqual([keep]);
  });
});

describe('excludes', () => {
  const tree = {
    'r/a.tmp': '', 'r/keep.tmp': '', 'r/b.txt': '', 'r/build/out.o': '', 'r/src/build/gen.c': '', 'r/src/main.c': '',
    'r/docs/x.log': '', 'r/docs/deep/y.log': '', 'r/logs/z.log': '', 'r/node_modules/m/index.js': '', 'r/f1': '', 'r/f2': '', 'r/fx': '',
  };

  it('applies every pattern form through a walk', async () => {
    await makeTree(tree);
    const walked = await walk(
      await openTree({ paths: ['r'], exclude: ['*.tmp', '!keep.tmp', '/build/', 'docs/*.log', '**/z.log', 'node_modules/', 'f[0-9]', `${dir}/r/src/build`] }),
    );
    expect(walked.paths).toEqual(['r/b.txt', 'r/docs/', 'r/docs/deep/', 'r/docs/deep/y.log', 'r/fx', 'r/keep.tmp', 'r/logs/', 'r/src/', 'r/src/main.c']);
  });

  it('a trailing slash excludes folders only; ? and ** ', async () => {
    await makeTree({ ...tree, 'r/file-build': '', 'r/x/build': 'a file named build' });
    const walked = await walk(await openTree({ paths: ['r'], exclude: ['build/', 'f?', 'docs/**'] }));
    expect(walked.paths).toEqual([
      'r/a.tmp', 'r/b.txt', 'r/docs/', 'r/file-build', 'r/keep.tmp', 'r/logs/', 'r/logs/z.log', 'r/node_modules/', 'r/node_modules/m/', 'r/node_modules/m/index.js',
      'r/src/', 'r/src/main.c', 'r/x/', 'r/x/build',
    ]);
  });

  it('reads excludeFile (one or several, relative to the job file) after exclude', async () => {
    await makeTree({ ...tree, 'jobs/excludes.txt': '# temporary files\n*.tmp\n\n/docs/\n', 'jobs/more.txt': '!keep.tmp\n' });
    const walked = await walk(await openTree({ paths: ['../r'], excludeFile: ['excludes.txt', 'more.txt'], exclude: ['/src'] }, at('jobs')));
    expect(walked.paths).toEqual(['r/b.txt', 'r/build/', 'r/build/out.o', 'r/f1', 'r/f2', 'r/fx', 'r/keep.tmp', 'r/logs/', 'r/logs/z.log', 'r/node_modules/', 'r/node_modules/m/', 'r/node_modules/m/index.js']);
    const missing = await openTree({ paths: ['r'], excludeFile: 'nope.txt' }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(UsageError);
    expect((missing as Error).message).toBe(`source.excludeFile ${at('nope.txt')} cannot be read: ENOENT (no such file or directory)`);
    await expect(openTree({ paths: ['r'], exclude: ['a\\'] })).rejects.toThrow(/source.exclude: .*lone backslash/);
  });

  it('excludeCaches keeps a tagged folder and its tag, not the rest; a wrong signature is no tag', async () => {
    const signature = 'Signature: 8a477f597d28d172789f06886806bc55';
    await makeTree({
      'r/cache/CACHEDIR.TAG': `${signature}\n# This file is a cache directory tag.\n`, 'r/cache/blob': 'x', 'r/cache/sub/more': 'x',
      'r/fake/CACHEDIR.TAG': 'Signature: 0000000000000000000000000000000', 'r/fake/kept': 'x', 'r/short/CACHEDIR.TAG': signature.slice(0, 20), 'r/short/kept': '',
    });
    expect((await walk(await openTree({ paths: ['r'], excludeCaches: true }))).paths).toEqual([
      'r/cache/', 'r/cache/CACHEDIR.TAG', 'r/fake/', 'r/fake/CACHEDIR.TAG', 'r/fake/kept', 'r/short/', 'r/short/CACHEDIR.TAG', 'r/short/kept',
    ]);
    expect((await walk(await openTree({ paths: ['r'] }))).paths).toContain('r/cache/sub/more');
  });

  it('excludeLargerThan leaves out larger regular files only', async () => {
    await makeTree({ 'r/small': 'x'.repeat(1024), 'r/exact': 'x'.repeat(2048), 'r/big': 'x'.repeat(2049), 'r/dir/': '' });
    await truncate(at('r/big'), 5 * 1024 * 1024); // sparse, still large
    await symlink('big', at('r/link'));
    expect((await walk(await openTree({ paths: ['r'], excludeLargerThan: '2K' }))).paths).toEqual(['r/dir/', 'r/exact', 'r/link', 'r/small']);
    expect((await walk(await openTree({ paths: ['r'], excludeLargerThan: 1024 }))).paths).toEqual(['r/dir/', 'r/link', 'r/small']);
    expect((await walk(await openTree({ paths: ['r'], excludeLargerThan: '1.5 MiB' }))).paths).toEqual(['r/dir/', 'r/exact', 'r/link', 'r/small']);
    await expect(openTree({ paths: ['r'], excludeLargerThan: '12 parsecs' })).rejects.toThrow(UsageError);
  });
});

describe('oneFileSystem', () => {
  it('keeps a mount point below a root, empty; without it, walks into the mount', async () => {
    await makeTree({ 'r/own': '', 'r/mnt/': '', 'r/mnt2/': '' });
    sh('mount', '-t', 'tmpfs', '-o', 'size=1m', 'cairn-test', at('r/mnt'));
    cleanups.push(() => void sh('umount', at('r/mnt')));
    await makeTree({ 'r/mnt/inside/file': 'x' });
    expect((await walk(await openTree({ paths: ['r'], oneFileSystem: true }))).paths).toEqual(['r/mnt/', 'r/mnt2/', 'r/own']);
    expect((await walk(await openTree({ paths: ['r'] }))).paths).toEqual(['r/mnt/', 'r/mnt/inside/', 'r/mnt/inside/file', 'r/mnt2/', 'r/own']);
    // A root that is itself on the other file system is backed up.
    expect((await walk(await openTree({ paths: ['r/mnt'], oneFileSystem: true }))).paths).toEqual(['r/mnt/inside/', 'r/mnt/inside/file']);
  });
});

describe('open', () => {
  it('reads content, reports holes and the size and times now', async () => {
    await makeTree({ 'r/': '' });
    const file = at('r/sparse');
    await writeFile(file, '');
    await truncate(file, 4 * 1024 * 1024);
    const handle = await openFile(file, 'r+');
    await handle.write(Buffer.from('data here'), 0, 9, 1024 * 1024);
    await handle.close();
    const tree = await openTree({ paths: ['r'] });
    const opened = await tree.open(Buffer.from(file));
    try {
      expect(await opened.dataRanges(4 * 1024 * 1024)).toEqual([{ offset: 1024 * 1024, length: 4096 }]);
      const into = Buffer.alloc(20);
      expect(await opened.read(into, 2, 9, 1024 * 1024)).toBe(9);
      expect(into.subarray(2, 11).toString()).toBe('data here');
      expect(await opened.read(into, 0, 20, 4 * 1024 * 1024)).toBe(0);
      const stats = lstatSync(file, { bigint: true });
      expect(await opened.stat()).toEqual({ size: 4 * 1024 * 1024, mtimeNs: stats.mtimeNs, ctimeNs: stats.ctimeNs });
    } finally {
      await opened.close();
    }
  });

  it('readWhole: a small file in one call, with its size and times after', async () => {
    await makeTree({ 'r/f': 'small content' });
    const tree = await openTree({ paths: ['r'] });
    const into = new Uint8Array(new SharedArrayBuffer(100), 0, 13);
    const stats = lstatSync(at('r/f'), { bigint: true });
    expect(await tree.readWhole!(Buffer.from(at('r/f')), into)).toEqual({ bytesRead: 13, after: { size: 13, mtimeNs: stats.mtimeNs, ctimeNs: stats.ctimeNs } });
    expect(Buffer.from(into).toString()).toBe('small content');
    await expect(tree.readWhole!(Buffer.from(at('r/missing')), into)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('readWhole: reads asked for at once share trips to the thread pool, each answered with its own file or error', async () => {
    const files = Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`r/f${i}`, `content of file ${i}`]));
    await makeTree(files);
    const tree = await openTree({ paths: ['r'] });
    const names = [...Object.keys(files).slice(0, 10), 'r/missing', ...Object.keys(files).slice(10)];
    const intos = names.map(() => new Uint8Array(new SharedArrayBuffer(32)));
    const reads = await Promise.allSettled(names.map((name, i) => tree.readWhole!(Buffer.from(at(name)), intos[i]!)));
    names.forEach((name, i) => {
      if (name === 'r/missing') return expect(reads[i]).toMatchObject({ status: 'rejected', reason: { code: 'ENOENT', path: at(name) } });
      const content = files[name]!;
      expect(reads[i]).toMatchObject({ status: 'fulfilled', value: { bytesRead: content.length, after: { size: content.length } } });
      expect(Buffer.from(intos[i]!.subarray(0, content.length)).toString()).toBe(content);
    });
  });

  it('does not change the access time (O_NOATIME), and refuses a symlink', async () => {
    await makeTree({ 'r/f': 'content' });
    const posix = await loadPosix();
    posix.setTimes(at('r/f'), 1_000_000_000n, 2_000_000_000_000_000_000n); // atime before mtime: relatime would update it
    const tree = await openTree({ paths: ['r'] });
    const opened = await tree.open(Buffer.from(at('r/f')));
    await opened.read(Buffer.alloc(7), 0, 7, 0);
    await opened.close();
    expect(lstatSync(at('r/f'), { bigint: true }).atimeNs).toBe(1_000_000_000n);
    await symlink('f', at('r/l'));
    await expect(tree.open(Buffer.from(at('r/l')))).rejects.toMatchObject({ code: 'ELOOP' });
  });
});

describe('children that cannot be read', () => {
  it('are unreadable problems with the reason; vanished ones are left out', async () => {
    await makeTree({ 'r/ok': '', 'r/denied': '', 'r/gone': '' });
    const posix = await loadPosix();
    const tree = await openTree({ paths: ['r'] });
    // The system refuses nothing to root: the native call's answer is changed for two children.
    const listChildren: typeof posix.listChildren = async (folder) => {
      const found = await posix.listChildren(folder);
      found.nameEnds.forEach((end, i) => {
        const name = found.names.toString('utf8', i === 0 ? 0 : found.nameEnds[i - 1], end);
        const code = { denied: 'EACCES', gone: 'ENOENT' }[name];
        if (code) found.errors[i] = Object.assign(new Error(`${code}: lstat`), { code, errno: -1, syscall: 'lstat' });
      });
      return found;
    };
    const patched = new FileTree((tree as unknown as { options: WalkOptions }).options, [], { ...posix, listChildren });
    expect(await walk(patched)).toEqual({ paths: ['r/ok'], problems: ['r/denied: unreadable (EACCES (permission denied))'] });
  });
});
