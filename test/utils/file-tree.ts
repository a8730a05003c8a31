import { chmod, chown, link, mkdir, stat, symlink, truncate, writeFile, open } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { run, runCommand, runForBytes } from './exec.js';

/*
 * A file tree with every kind of entry a file backup must keep, and comparisons of two trees
 * with independent tools (rsync, getfacl, getfattr), not with cairn's own code.
 */

export interface EveryKindOptions {
  /** Bytes of the large random file; default 100 MiB. */
  largeBytes?: number;
  /** Folders nested in the deep branch; default 100. */
  depth?: number;
}

/** Paths (below the tree's root) of notable entries. */
export const EVERY_KIND = {
  regular: 'regular.txt',
  empty: 'empty',
  sparse: 'sparse.img',
  large: 'large.bin',
  hardA: 'hard-a',
  hardB: 'sub/hard-b',
  invalidUtf8: Buffer.concat([Buffer.from('bad-'), Buffer.from([0xff, 0xfe]), Buffer.from('.txt')]),
  longName: 'n'.repeat(251) + '.txt',
  deep: 'deep',
} as const;

const SPARSE_SIZE = 64 * 1024 * 1024;

/**
 * Builds below `root` (which must exist) a tree with: regular, empty, sparse and large files,
 * hard links, symlinks to a file, a folder and nowhere, a character and a block device node,
 * a FIFO, user xattrs and a file capability, access and default ACLs, setuid/setgid/sticky
 * modes, foreign owners, nanosecond times, a name that is not UTF-8, a 255-byte name, and a
 * deep chain of folders. Must run as root (device nodes, owners, capabilities).
 */
export async function buildEveryKindTree(root: string, options: EveryKindOptions = {}): Promise<void> {
  const at = (...parts: string[]) => join(root, ...parts);
  await mkdir(at('sub'), { recursive: true });
  await writeFile(at(EVERY_KIND.regular), 'hello, files\n');
  await writeFile(at(EVERY_KIND.empty), '');
  await writeSparse(at(EVERY_KIND.sparse));
  await writeRandom(at(EVERY_KIND.large), options.largeBytes ?? 100 * 1024 * 1024);
  await writeFile(at(EVERY_KIND.hardA), 'two names, one file\n');
  await link(at(EVERY_KIND.hardA), at(EVERY_KIND.hardB));
  await symlink(EVERY_KIND.regular, at('link-to-file'));
  await symlink('sub', at('link-to-folder'));
  await symlink('/nowhere/at/all', at('link-to-nowhere'));
  await run('mknod', [at('char-null'), 'c', '1', '3']);
  await run('mknod', [at('block-loop'), 'b', '7', '200']);
  await run('mkfifo', [at('fifo')]);
  await writeFile(Buffer.concat([Buffer.from(root + '/'), EVERY_KIND.invalidUtf8]), 'not utf-8\n');
  await writeFile(at(EVERY_KIND.longName), 'a name of 255 bytes\n');
  await buildDeep(at(EVERY_KIND.deep), options.depth ?? 100);
  await setModesAndOwners(at);
  await setAttributes(at);
  // Times last: everything above changed them. Folders too (their children are in place).
  await run('touch', ['-h', '-d', '2021-02-03 04:05:06.123456789', at(EVERY_KIND.regular), at('link-to-file'), at('sub'), at(EVERY_KIND.sparse)]);
}

async function writeSparse(path: string): Promise<void> {
  await truncate(path, 0).catch(() => undefined);
  const handle = await open(path, 'w');
  try {
    await handle.write(randomBytes(100_000), 0, 100_000, 10 * 1024 * 1024);
    await handle.write(Buffer.from('the end\n'), 0, 8, SPARSE_SIZE - 8);
  } finally {
    await handle.close();
  }
}

async function writeRandom(path: string, size: number): Promise<void> {
  const handle = await open(path, 'w');
  try {
    for (let done = 0; done < size; ) {
      const piece = randomBytes(Math.min(8 * 1024 * 1024, size - done));
      await handle.write(piece, 0, piece.length, done);
      done += piece.length;
    }
  } finally {
    await handle.close();
  }
}

async function buildDeep(path: string, depth: number): Promise<void> {
  const names = Array.from({ length: depth }, (_, i) => `d${i}`);
  const bottom = join(path, ...names);
  await mkdir(bottom, { recursive: true });
  await writeFile(join(bottom, 'bottom.txt'), 'deep down\n');
}

async function setModesAndOwners(at: (...parts: string[]) => string): Promise<void> {
  await writeFile(at('setuid'), '#!/bin/sh\n');
  await chown(at('setuid'), 0, 0);
  await chmod(at('setuid'), 0o4755);
  await mkdir(at('setgid-dir'));
  await chmod(at('setgid-dir'), 0o2775);
  await mkdir(at('sticky-dir'));
  await chmod(at('sticky-dir'), 0o1777);
  await writeFile(at('sub', 'foreign-owner'), 'owned by nobody known\n');
  await chown(at('sub', 'foreign-owner'), 1234, 5678);
  await run('chown', ['-h', '4321:8765', at('link-to-nowhere')]);
  await writeFile(at('private'), 'secret\n');
  await chmod(at('private'), 0o600);
}

async function setAttributes(at: (...parts: string[]) => string): Promise<void> {
  await run('setfattr', ['-n', 'user.note', '-v', 'hello', at(EVERY_KIND.regular)]);
  await run('setfattr', ['-n', 'user.binary', '-v', '0x00ff10', at('sub', 'foreign-owner')]);
  await run('setfattr', ['-n', 'user.on-folder', '-v', 'folder note', at('sub')]);
  await writeFile(at('capable'), '#!/bin/sh\n');
  await chmod(at('capable'), 0o755);
  const setcap = await runCommand('setcap', ['cap_net_raw+ep', at('capable')]).catch(() => undefined);
  // Without setcap: the raw attribute (a version 2 capability: cap_net_raw permitted and effective).
  if (setcap?.exitCode !== 0) await run('setfattr', ['-n', 'security.capability', '-v', '0x0100000200200000000000000000000000000000', at('capable')]);
  await writeFile(at('acl-file'), 'with an access ACL\n');
  await run('setfacl', ['-m', 'u:1234:rwx,g:5678:r', at('acl-file')]);
  await mkdir(at('acl-dir'));
  await run('setfacl', ['-m', 'u:1234:rx', at('acl-dir')]);
  await run('setfacl', ['-d', '-m', 'u:1234:rwx,g:5678:rx', at('acl-dir')]);
  await writeFile(at('acl-dir', 'inherits'), 'created under a default ACL\n');
}

/**
 * Differences between two trees, as independent tools see them; empty when they are the same:
 * `rsync -aHAX --numeric-ids --checksum --dry-run --itemize-changes` (content, modes, owners,
 * times, links, devices, xattrs, ACLs), `getfacl -R` and `getfattr -R -d -m -` (compared
 * with paths relative to each root, entry by entry in sorted order).
 */
export async function compareTrees(original: string, restored: string): Promise<string[]> {
  const differences: string[] = [];
  const rsync = await runCommand('rsync', ['-aHAX', '--numeric-ids', '--checksum', '--dry-run', '--itemize-changes', '--delete', `${original}/`, `${restored}/`]);
  if (rsync.exitCode !== 0) differences.push(`rsync failed: ${rsync.stderr}`);
  differences.push(...rsync.stdout.split('\n').filter((line) => line.trim() !== '').map((line) => `rsync: ${line}`));
  for (const [tool, args] of [
    ['getfacl', ['-R', '-P', '-n', '.']],
    ['getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '.']],
  ] as const) {
    const [a, b] = await Promise.all([sortedRecords(tool, args, original), sortedRecords(tool, args, restored)]);
    if (a !== b) differences.push(`${tool} output differs:\n--- ${original}\n${a}\n--- ${restored}\n${b}`);
  }
  return differences;
}

/** A recursive tool's output (blank-line separated records, one per path), records sorted: readdir order differs between trees. */
async function sortedRecords(tool: string, args: readonly string[], cwd: string): Promise<string> {
  const output = (await runForBytes(tool, args, { cwd })).toString('latin1');
  return output
    .split(/\n\n+/)
    .map((record) => record.trim())
    .filter((record) => record !== '')
    .sort()
    .join('\n\n');
}

/** Whether a file takes less space on disk than its length (it has holes). */
export async function isSparse(path: string): Promise<boolean> {
  const stats = await stat(path);
  return stats.blocks * 512 < stats.size;
}
