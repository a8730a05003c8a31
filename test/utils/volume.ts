import { createCipheriv, createHash } from 'node:crypto';
import { mkdir, open, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { dirname, join } from 'node:path';
import { expect } from 'vitest';
import { run, runCommand } from './exec.js';

const MiB = 1024 * 1024;

/** A small, seeded PRNG (mulberry32): the same seed gives the same tree on every machine. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `length` incompressible bytes determined by `seed` (AES-256-CTR keystream). */
export function randomBytesFor(seed: string, length: number): Buffer {
  const key = createHash('sha256').update(`key:${seed}`).digest();
  const iv = createHash('sha256').update(`iv:${seed}`).digest().subarray(0, 16);
  return createCipheriv('aes-256-ctr', key, iv).update(Buffer.alloc(length));
}

const WORDS = (
  'cairn stone trail summit ridge valley river backup volume snapshot restore chunk pack index ' +
  'key cipher codec target source extent block sector partition journal inode bitmap superblock ' +
  'the a of and to in is it that for on with as by at from this be or an are was'
).split(' ');

/** Overwrites `length` bytes at `offset` of a file with random bytes determined by `seed`. */
export async function overwriteWithRandom(path: string, offset: number, length: number, seed: string): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.write(randomBytesFor(seed, length), 0, length, offset);
  } finally {
    await handle.close();
  }
}

/** `length` bytes of compressible, deterministic text. */
export function textFor(seed: number, length: number): Buffer {
  const next = prng(seed);
  const parts: string[] = [];
  let size = 0;
  while (size < length) {
    const words = 6 + Math.floor(next() * 12);
    const line = Array.from({ length: words }, () => WORDS[Math.floor(next() * WORDS.length)]).join(' ') + '.\n';
    parts.push(line);
    size += line.length;
  }
  return Buffer.from(parts.join('')).subarray(0, length);
}

export type FileKind = 'random' | 'text' | 'zeros';

export interface TreeFile {
  /** Relative to the tree's folder. */
  path: string;
  kind: FileKind;
  size: number;
}

export interface TreeSpec {
  seed: number;
  /** Total bytes of incompressible files. */
  randomBytes: number;
  /** Total bytes of text files. */
  textBytes: number;
  /** Total bytes of all-zero files. */
  zeroBytes?: number;
  /** How many files of each kind the bytes are spread over; default 6. */
  filesPerKind?: number;
}

/**
 * Writes a deterministic folder of files: random binaries, text and zero-filled files in a
 * few nested folders, plus a symlink and an empty file. Returns the regular files written.
 */
export async function writeFileTree(dir: string, spec: TreeSpec): Promise<TreeFile[]> {
  const next = prng(spec.seed);
  const perKind = spec.filesPerKind ?? 6;
  const folders = ['', 'etc', 'home/user/docs', 'var/lib/data', 'usr/share/blobs'];
  const files: TreeFile[] = [];
  const kinds: Array<[FileKind, number]> = [
    ['random', spec.randomBytes],
    ['text', spec.textBytes],
    ['zeros', spec.zeroBytes ?? 0],
  ];
  for (const [kind, total] of kinds) {
    if (total <= 0) continue;
    // Uneven sizes that add up to `total`, none of them a multiple of the block size.
    const weights = Array.from({ length: perKind }, () => 0.5 + next());
    const sum = weights.reduce((a, b) => a + b, 0);
    let left = total;
    weights.forEach((w, i) => {
      const size = i === perKind - 1 ? left : Math.min(left, Math.floor((total * w) / sum));
      left -= size;
      const folder = folders[Math.floor(next() * folders.length)]!;
      files.push({ path: join(folder, `${kind}-${i}.${kind === 'text' ? 'txt' : 'bin'}`), kind, size });
    });
  }
  for (const [i, file] of files.entries()) {
    const absolute = join(dir, file.path);
    await mkdir(dirname(absolute), { recursive: true });
    const content =
      file.kind === 'random' ? randomBytesFor(`${spec.seed}/${i}`, file.size) : file.kind === 'text' ? textFor(spec.seed * 1000 + i, file.size) : Buffer.alloc(file.size);
    await writeFile(absolute, content);
  }
  await mkdir(join(dir, 'etc'), { recursive: true });
  await writeFile(join(dir, 'etc/hostname'), 'cairn-e2e\n');
  await writeFile(join(dir, 'empty'), '');
  await run('ln', ['-sf', 'etc/hostname', join(dir, 'hostname-link')]);
  return files;
}

/** Makes an ext4 image of `sizeBytes` from the folder `fromDir` with `mkfs.ext4 -d`. */
export async function makeExt4Image(path: string, sizeBytes: number, fromDir: string): Promise<void> {
  await writeFile(path, '');
  await truncate(path, sizeBytes);
  await run('mkfs.ext4', ['-q', '-F', '-d', fromDir, path]);
}

/** A folder of files (see writeFileTree) made into an ext4 image of `sizeBytes`. */
export async function makeVolume(dir: string, name: string, sizeBytes: number, spec: TreeSpec): Promise<{ image: string; files: TreeFile[]; tree: string }> {
  const tree = join(dir, `${name}-tree`);
  await mkdir(tree, { recursive: true });
  const files = await writeFileTree(tree, spec);
  const image = join(dir, `${name}.img`);
  await makeExt4Image(image, sizeBytes, tree);
  return { image, files, tree };
}

/** What `e2fsck -fn` prints for a clean filesystem, apart from its summary line. */
const CLEAN_FSCK_LINES = [
  /^e2fsck \d+\.\d+(\.\d+)? \(.+\)$/,
  /^Pass 1: Checking inodes, blocks, and sizes$/,
  /^Pass 2: Checking directory structure$/,
  /^Pass 3: Checking directory connectivity$/,
  /^Pass 4: Checking reference counts$/,
  /^Pass 5: Checking group summary information$/,
];

export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/**
 * Lines of `e2fsck -fn path` (forced, read-only) that a clean filesystem does not print:
 * anything besides the banner, the five pass headers and the summary. The exit code alone
 * is not enough: with `-n`, wrong free-block or inode counts are reported and still exit 0.
 */
export async function fsckFindings(path: string): Promise<{ exitCode: number | null; unexpected: string[]; output: string }> {
  const result = await runCommand('e2fsck', ['-fn', path]);
  const output = result.stdout + result.stderr;
  const summary = new RegExp(`^${escapeRegExp(path)}: \\d+/\\d+ files \\(\\d+\\.\\d% non-contiguous\\), \\d+/\\d+ blocks$`);
  const unexpected = output
    .split('\n')
    .filter((line) => line.trim() !== '')
    .filter((line) => !CLEAN_FSCK_LINES.some((clean) => clean.test(line)) && !summary.test(line));
  return { exitCode: result.exitCode, unexpected, output };
}

/** Asserts that `e2fsck -fn` finds the ext2/3/4 filesystem in `path` (image or device) clean, strictly. */
export async function expectCleanFsck(path: string): Promise<void> {
  const { exitCode, unexpected, output } = await fsckFindings(path);
  expect(exitCode, `e2fsck -fn ${path}:\n${output}`).toBe(0);
  expect(unexpected, `e2fsck -fn ${path}:\n${output}`).toEqual([]);
  // The summary is there: e2fsck really checked this filesystem.
  expect(output.split('\n').some((line) => line.startsWith(`${path}: `)), `e2fsck -fn ${path}:\n${output}`).toBe(true);
}

/** Reads a file out of an ext2/3/4 image or device without mounting it (`debugfs dump`). */
export async function readFromExt4(image: string, pathInside: string, scratchFile: string): Promise<Buffer> {
  await run('debugfs', ['-R', `dump /${pathInside} ${scratchFile}`, image]);
  return readFile(scratchFile);
}

/** Asserts that the ext4 filesystem in `image` holds every file of a tree, byte for byte. */
export async function expectFilesIntact(image: string, tree: string, files: readonly TreeFile[], scratchFile: string): Promise<void> {
  for (const file of [...files, { path: 'etc/hostname' }]) {
    const inside = await readFromExt4(image, file.path, scratchFile);
    expect(inside.equals(await readFile(join(tree, file.path))), `${file.path} in ${image}`).toBe(true);
  }
}

/** True when the files (or their first `bytes` bytes) are identical, per `cmp`. */
export async function sameBytes(a: string, b: string, bytes?: number): Promise<boolean> {
  const result = await runCommand('cmp', [...(bytes !== undefined ? ['-n', String(bytes)] : []), a, b]);
  if (result.exitCode === 0) return true;
  if (result.exitCode === 1) return false;
  throw new Error(`cmp ${a} ${b} failed: ${result.stderr.trim()}`);
}

/** sha256 of a file or block device, or of `length` bytes of it from `offset` on, read in pieces. */
export async function sha256Of(path: string, offset = 0, length?: number): Promise<string> {
  const hash = createHash('sha256');
  const handle = await open(path, constants.O_RDONLY);
  try {
    const end = length === undefined ? await sizeOf(path) : offset + length;
    const buffer = Buffer.alloc(4 * MiB);
    for (let at = offset; at < end; ) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, end - at), at);
      if (bytesRead === 0) throw new Error(`${path} ends at ${at}, before ${end}`);
      hash.update(buffer.subarray(0, bytesRead));
      at += bytesRead;
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

/** Bytes actually allocated on disk for a file (`stat` blocks × 512). */
export async function allocatedBytes(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}

/** Size of a file or block device in bytes. */
export async function sizeOf(path: string): Promise<number> {
  const handle = await open(path, constants.O_RDONLY);
  try {
    const stats = await handle.stat();
    if (stats.isBlockDevice()) return Number((await run('blockdev', ['--getsize64', path])).trim());
    return stats.size;
  } finally {
    await handle.close();
  }
}

/** Copies a file keeping its holes. */
export async function copySparse(from: string, to: string): Promise<void> {
  await run('cp', ['--sparse=always', from, to]);
}

/** sha256 of every `chunkSize` piece of a file (the last one may be shorter); `null` for all-zero pieces. */
export async function chunkHashes(path: string, chunkSize: number): Promise<Array<string | null>> {
  const handle = await open(path, 'r');
  try {
    const size = (await handle.stat()).size;
    const buffer = Buffer.alloc(chunkSize);
    const zeros = Buffer.alloc(chunkSize);
    const hashes: Array<string | null> = [];
    for (let offset = 0; offset < size; offset += chunkSize) {
      const length = Math.min(chunkSize, size - offset);
      const { bytesRead } = await handle.read(buffer, 0, length, offset);
      const piece = buffer.subarray(0, bytesRead);
      hashes.push(piece.equals(zeros.subarray(0, bytesRead)) ? null : createHash('sha256').update(piece).digest('hex'));
    }
    return hashes;
  } finally {
    await handle.close();
  }
}

export { MiB };
