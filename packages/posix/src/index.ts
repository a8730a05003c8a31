/*
 * @cairn/posix: synchronous POSIX calls that Node's fs does not offer, for file backup and
 * restore. Each throws, on failure, an Error like Node's fs errors: `code` ('ENOTSUP'),
 * `errno` (negative, as fs reports it), `syscall` and `path`. Paths are Buffers (bytes taken as
 * they are, so names need not be UTF-8) or strings (UTF-8).
 */
import { createRequire } from 'node:module';

export type PathLike = Buffer | string;

export interface Xattr {
  name: string;
  value: Buffer;
}

export interface DataRange {
  offset: number;
  length: number;
}

/** The error every call throws when the system refuses (fields as in Node's fs errors). */
export interface PosixError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

/**
 * What listChildren found for each child, by index: `stats` holds STAT_FIELDS numbers per child
 * (see StatField); `targets[i]` is a symlink's target, `xattrs[i]` the extended attributes when
 * there are any (sorted by name), `errors[i]` the error when the child could not be read
 * (`syscall` 'lstat', 'readlink' or 'llistxattr'; code 'ENOENT' when it vanished). Absent
 * elements are undefined.
 */
export interface ChildrenStats {
  stats: BigInt64Array;
  targets: Array<Buffer | undefined>;
  xattrs: Array<Xattr[] | undefined>;
  errors: Array<PosixError | undefined>;
}

/**
 * What listChildren found: the folder's names, all in `names`, name `i` ending at `nameEnds[i]`
 * (starting where name `i - 1` ends), sorted bytewise; for each, by the same index, its
 * ChildrenStats, and in `direntTypes` the type readdir gave (DirentType; `unknown` where the
 * file system does not say): the only type known of a child whose lstat failed.
 */
export interface ListedChildren extends ChildrenStats {
  names: Buffer;
  nameEnds: Uint32Array;
  direntTypes: Uint8Array;
}

/** The values of `ListedChildren.direntTypes` (d_type), named as file types are in snapshots. */
export const DirentType = { unknown: 0, fifo: 1, chardev: 2, dir: 4, blockdev: 6, file: 8, symlink: 10, socket: 12 } as const;

/** The fields of one child in `ChildrenStats.stats`, in order; times in nanoseconds since the epoch. */
export const StatField = { mode: 0, uid: 1, gid: 2, size: 3, ino: 4, dev: 5, nlink: 6, rdev: 7, atimeNs: 8, mtimeNs: 9, ctimeNs: 10 } as const;
export const STAT_FIELDS = 11;

/** What readWhole read, and the file's size and times when it was done (fstat). */
export interface WholeRead {
  bytesRead: number;
  size: number;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/** Metadata writeFileAndRename gives the file; the owner is set only when `uid` is given. */
export interface NewFileMetadata {
  mode: number;
  uid?: number;
  gid?: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  xattrs: readonly Xattr[];
}

/** Metadata writeFileAndRename could not set (the file is there, with its content). */
export interface MetadataFailure {
  what: 'owner' | 'mode' | 'xattr' | 'times';
  /** The extended attribute's name, for `xattr`. */
  name?: string;
  error: PosixError;
}

interface Native {
  writeFileAndRename(temp: PathLike, path: PathLike, pieces: readonly Uint8Array[], offsets: readonly number[], size: number, metadata: NewFileMetadata): Promise<MetadataFailure[]>;
  readWhole(path: PathLike, into: Uint8Array): Promise<WholeRead>;
  writeFilesAndRename(files: readonly NewFile[]): Promise<Array<MetadataFailure[] | PosixError>>;
  readWholeMany(paths: readonly PathLike[], intos: readonly Uint8Array[]): Promise<Array<WholeRead | PosixError>>;
  listChildren(folder: PathLike): Promise<ListedChildren>;
  listXattrs(path: PathLike): Xattr[];
  setXattr(path: PathLike, name: string, value: Buffer): void;
  setTimes(path: PathLike, atimeNs: bigint, mtimeNs: bigint): void;
  mknod(path: PathLike, mode: number, rdev: bigint): void;
  dataRanges(fd: number, size: number): DataRange[];
  punchHole(fd: number, offset: number, length: number): Promise<boolean>;
  zeroRange(fd: number, offset: number, length: number): Promise<boolean>;
  adviseHugePages(buffer: Uint8Array): boolean;
  releasePages(buffer: Uint8Array): boolean;
  limitMallocArenas(count: number): boolean;
  aesGcmSealInto(key: Uint8Array, nonce: Uint8Array, parts: Uint8Array[], out: Uint8Array, offset: number): number;
  aesGcmOpenInto(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array, out: Uint8Array): boolean;
  scrypt(password: Uint8Array, salt: Uint8Array, N: number, r: number, p: number, keyLength: number): Promise<Buffer>;
  gearCut(gear: Int32Array | Uint32Array, data: Uint8Array, warm: number, from: number, normal: number, limit: number, maskSmall: number, maskLarge: number): number;
  userName(uid: number): string | undefined;
  groupName(gid: number): string | undefined;
}

function loadNative(): Native {
  const require = createRequire(import.meta.url);
  try {
    return require('../build/Release/posix.node') as Native;
  } catch (error) {
    throw new Error(
      `@cairn/posix: the native addon is not built (${(error as Error).message}); run \`pnpm install\` ` +
        '(it compiles packages/posix with node-gyp; needs a C compiler, make and python3)',
      { cause: error },
    );
  }
}

const native = loadNative();

/** Extended attributes of a path, not following a final symlink (llistxattr + lgetxattr), sorted by name; [] when the file system has none. */
export function listXattrs(path: PathLike): Xattr[] {
  return native.listXattrs(path);
}

/** Sets one extended attribute, not following a final symlink (lsetxattr). */
export function setXattr(path: PathLike, name: string, value: Buffer): void {
  native.setXattr(path, name, value);
}

/** Sets access and modification times to the nanosecond, not following a final symlink (utimensat with AT_SYMLINK_NOFOLLOW). */
export function setTimes(path: PathLike, atimeNs: bigint, mtimeNs: bigint): void {
  native.setTimes(path, atimeNs, mtimeNs);
}

/** Creates a device node or FIFO; `mode` includes the type bits (S_IFCHR, S_IFBLK, S_IFIFO). */
export function mknod(path: PathLike, mode: number, rdev: bigint): void {
  native.mknod(path, mode, rdev);
}

/**
 * The ranges of an open file (fd) below `size` that hold data, in order (SEEK_DATA/SEEK_HOLE);
 * `[{ offset: 0, length: size }]` when the file system cannot tell. Moves the fd's file offset
 * (positioned reads are not affected).
 */
export function dataRanges(fd: number, size: number): DataRange[] {
  return native.dataRanges(fd, size);
}

/**
 * Deallocates `length` bytes at `offset` of an open file (fd), which then read as zeros
 * (fallocate with FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE), in the thread pool; false
 * when the file system cannot (write zeros instead).
 */
export function punchHole(fd: number, offset: number, length: number): Promise<boolean> {
  return native.punchHole(fd, offset, length);
}

/**
 * Makes `length` bytes at `offset` of an open file (fd) read as zeros without writing them or
 * freeing blocks: each stretch of data in the range (SEEK_DATA) becomes unwritten extents
 * (fallocate with FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE) and holes stay holes, so the
 * file's allocation neither grows nor shrinks. In the thread pool; false when the file system
 * cannot (punch or write zeros instead).
 */
export function zeroRange(fd: number, offset: number, length: number): Promise<boolean> {
  return native.zeroRange(fd, offset, length);
}

/**
 * Asks the kernel to back the whole 2 MiB pages inside `buffer` with transparent huge pages
 * (madvise MADV_HUGEPAGE): one page fault per 2 MiB instead of per 4 KiB when it is first
 * touched. For long-lived buffers of several MiB. False when nothing was advised (no whole
 * huge page inside, or the kernel has no transparent huge pages).
 */
export function adviseHugePages(buffer: Uint8Array): boolean {
  return native.adviseHugePages(buffer);
}

/**
 * Gives the whole 4 KiB pages inside `buffer` back to the kernel (madvise MADV_DONTNEED):
 * they read as zeros afterwards and are resident again only once touched. For the tail of a
 * long-lived buffer that a rare large piece filled. Only for memory nothing else reads
 * meanwhile; false when no whole page lies inside.
 */
export function releasePages(buffer: Uint8Array): boolean {
  return native.releasePages(buffer);
}

/**
 * Caps the malloc arenas glibc makes from now on (as `MALLOC_ARENA_MAX`, which glibc reads only
 * when a process starts); arenas made before stay. False where the C library has no such cap.
 */
export function limitMallocArenas(count: number): boolean {
  return native.limitMallocArenas(count);
}

/**
 * AES-256-GCM (12-byte nonce, 16-byte tag) of `parts`, in order, as one message, written into
 * `out` at `offset` with the tag after it; the bytes written. The same bytes as Node's cipher,
 * without its new zero-filled buffer per update and the copy out of it. A part must not
 * overlap `out` other than exactly in place.
 */
export function aesGcmSealInto(key: Uint8Array, nonce: Uint8Array, parts: Uint8Array[], out: Uint8Array, offset: number): number {
  return native.aesGcmSealInto(key, nonce, parts, out, offset);
}

/**
 * Decrypts AES-256-GCM `ciphertext` into `out` (room for as many bytes) and checks `tag`: false
 * when the message is not authentic, and then `out` holds garbage.
 */
export function aesGcmOpenInto(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array, out: Uint8Array): boolean {
  return native.aesGcmOpenInto(key, nonce, ciphertext, tag, out);
}

/**
 * scrypt (RFC 7914, PBKDF2-HMAC-SHA256 inside) in the thread pool: the same key as Node's
 * `crypto.scrypt`, with the N blocks of 128r bytes in transparent huge pages instead of fresh
 * 4 KiB pages (about half of the time a 32 MiB derivation took, on the virtual machines
 * measured). `scryptSupported` tells which parameters it takes (N a power of two below
 * 2^(16·r), 128·r·N and 128·r·p at most 1 GiB, p at most 64); others throw a TypeError.
 */
export function scrypt(password: Uint8Array, salt: Uint8Array, N: number, r: number, p: number, keyLength: number): Promise<Buffer> {
  return native.scrypt(password, salt, N, r, p, keyLength);
}

/**
 * The inner loop of FastCDC's gear hash (h = (h << 1) + gear[byte], 32 bits, from 0), which
 * core's files/cdc.ts defines: feeds `data[warm, from)`, then returns the position just past the
 * first byte of `[from, normal)` after which `h & maskSmall` is 0, or of `[normal, limit)` after
 * which `h & maskLarge` is 0; -1 when there is none. `gear` holds 256 entries; the masks may be
 * given as signed 32-bit integers. Synchronous (about 3 GB/s: one chunk's bytes per call).
 */
export function gearCut(gear: Int32Array | Uint32Array, data: Uint8Array, warm: number, from: number, normal: number, limit: number, maskSmall: number, maskLarge: number): number {
  return native.gearCut(gear, data, warm, from, normal, limit, maskSmall, maskLarge);
}

/** Whether `scrypt` derives with these parameters. */
export function scryptSupported(N: number, r: number, p: number): boolean {
  const integers = [N, r, p].every((value) => Number.isInteger(value) && value >= 1 && value <= 0xffffffff);
  // RFC 7914 wants N < 2^(128·r/8) too, which binds only for r = 1 below 1 GiB.
  const small = N >= 2 && (N & (N - 1)) === 0 && (r > 1 || N < 2 ** 16) && p <= 64;
  return integers && small && 128 * r * N <= 2 ** 30 && 128 * r * p <= 2 ** 30;
}

/** The name of a user id (getpwuid_r), or undefined when it has none. */
export function userName(uid: number): string | undefined {
  return native.userName(uid);
}

/** The name of a group id (getgrgid_r), or undefined when it has none. */
export function groupName(gid: number): string | undefined {
  return native.groupName(gid);
}

/**
 * The names in `folder` (readdir, without `.` and `..`, sorted bytewise as fs.readdir sorts
 * them) and, for each, its lstat, symlink target and xattrs, done on libuv's thread pool in one
 * trip (getdents, fstatat, readlinkat, llistxattr/lgetxattr: what fs.readdir, fs.lstat and
 * listXattrs do, without a trip per child). Rejects when the folder cannot be opened or read
 * (`syscall` 'scandir', as fs.readdir); a child that cannot be read has its error in `errors`.
 */
export function listChildren(folder: PathLike): Promise<ListedChildren> {
  return native.listChildren(folder);
}

/**
 * Reads a regular file from its start into `into` (up to `into.length` bytes; fewer only at its
 * end), on libuv's thread pool in one trip: open (O_NOATIME where permitted, O_NOFOLLOW,
 * O_NONBLOCK), pread, fstat, close. `into` may be a view of a SharedArrayBuffer; it must not be
 * touched until the promise settles. Rejects with `syscall` 'open', 'read' or 'fstat'.
 */
export function readWhole(path: PathLike, into: Uint8Array): Promise<WholeRead> {
  return native.readWhole(path, into);
}

/**
 * readWhole for several files in one trip to the thread pool, one after the other there:
 * `paths[i]` into `intos[i]`. Resolves to each file's WholeRead, or the error that file met
 * (never rejects for one file's failure).
 */
export function readWholeMany(paths: readonly PathLike[], intos: readonly Uint8Array[]): Promise<Array<WholeRead | PosixError>> {
  return native.readWholeMany(paths, intos);
}

/**
 * Writes a regular file on libuv's thread pool in one trip: `temp` (which must not exist) is
 * created, `pieces[i]` written at `offsets[i]`, the size set to `size` (bytes no piece covers
 * stay holes), owner, mode (with setuid, setgid and sticky bits), extended attributes and times
 * set through the descriptor, and only then is it renamed to `path` (replacing a file there):
 * nobody sees a half-written file under `path`. Metadata that cannot be set is returned; anything
 * else rejects with `syscall` 'open', 'write', 'ftruncate', 'close' or 'rename', and `temp` is
 * removed. The pieces must not be touched until the promise settles.
 */
export function writeFileAndRename(temp: PathLike, path: PathLike, pieces: readonly Uint8Array[], offsets: readonly number[], size: number, metadata: NewFileMetadata): Promise<MetadataFailure[]> {
  return native.writeFileAndRename(temp, path, pieces, offsets, size, metadata);
}

/** One file for writeFilesAndRename: writeFileAndRename's arguments, named. */
export interface NewFile {
  temp: PathLike;
  path: PathLike;
  pieces: readonly Uint8Array[];
  offsets: readonly number[];
  size: number;
  metadata: NewFileMetadata;
}

/**
 * writeFileAndRename for several files in one trip to the thread pool, one after the other
 * there. Resolves to each file's metadata failures, or the error that file met (never rejects
 * for one file's failure).
 */
export function writeFilesAndRename(files: readonly NewFile[]): Promise<Array<MetadataFailure[] | PosixError>> {
  return native.writeFilesAndRename(files);
}
