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

interface Native {
  listXattrs(path: PathLike): Xattr[];
  setXattr(path: PathLike, name: string, value: Buffer): void;
  setTimes(path: PathLike, atimeNs: bigint, mtimeNs: bigint): void;
  mknod(path: PathLike, mode: number, rdev: bigint): void;
  dataRanges(fd: number, size: number): DataRange[];
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

/** The name of a user id (getpwuid_r), or undefined when it has none. */
export function userName(uid: number): string | undefined {
  return native.userName(uid);
}

/** The name of a group id (getgrgid_r), or undefined when it has none. */
export function groupName(gid: number): string | undefined {
  return native.groupName(gid);
}
