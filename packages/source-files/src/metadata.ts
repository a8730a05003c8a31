import { constants, type BigIntStats } from 'node:fs';
import { readlink } from 'node:fs/promises';
import type { FileMetadata, Posix, Xattr } from '@cairn/core';

const { S_IFMT, S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK } = constants;

const TYPES = new Map<number, FileMetadata['type']>([
  [S_IFREG, 'file'],
  [S_IFDIR, 'dir'],
  [S_IFLNK, 'symlink'],
  [S_IFCHR, 'chardev'],
  [S_IFBLK, 'blockdev'],
  [S_IFIFO, 'fifo'],
  [S_IFSOCK, 'socket'],
]);

/** What Posix.listChildren resolves to. */
export type ListedChildren = Awaited<ReturnType<Posix['listChildren']>>;

type StatFields = Pick<BigIntStats, 'mode' | 'uid' | 'gid' | 'size' | 'ino' | 'dev' | 'nlink' | 'rdev' | 'atimeNs' | 'mtimeNs' | 'ctimeNs'>;

function typeOf(mode: bigint): FileMetadata['type'] {
  const format = Number(mode) & S_IFMT;
  const type = TYPES.get(format);
  if (type === undefined) throw Object.assign(new Error(`unknown file type 0o${format.toString(8)}`), { code: 'EINVAL' });
  return type;
}

/** Turns lstat results into FileMetadata: type, owner names (looked up once per id), link targets, xattrs and ACLs. */
export class MetadataReader {
  private readonly users = new Map<number, string | undefined>();
  private readonly groups = new Map<number, string | undefined>();

  /** File types by readdir's d_type. */
  private readonly direntTypes: ReadonlyMap<number, FileMetadata['type']>;

  constructor(private readonly posix: Posix) {
    const { unknown, ...known } = posix.DirentType;
    this.direntTypes = new Map(Object.entries(known).map(([type, value]) => [value, type as FileMetadata['type']]));
  }

  /** The metadata of `path`, whose lstat (bigint) gave `stats`. Rejects when the link target or xattrs cannot be read. */
  async fromStats(path: Buffer, stats: BigIntStats): Promise<FileMetadata> {
    const type = typeOf(stats.mode);
    const target = type === 'symlink' ? await readlink(path, { encoding: 'buffer' }) : undefined;
    const xattrs = type === 'socket' ? [] : this.posix.listXattrs(path);
    const { mode, uid, gid, size, ino, dev, nlink, rdev, atimeNs, mtimeNs, ctimeNs } = stats;
    return this.build(type, { mode, uid, gid, size, ino, dev, nlink, rdev, atimeNs, mtimeNs, ctimeNs }, target, xattrs);
  }

  /** What child `index` of a listChildren result is: from its lstat, or where that failed as readdir said (undefined: it did not). */
  typeOfListed(children: ListedChildren, index: number): FileMetadata['type'] | undefined {
    if (children.errors[index] === undefined) return typeOf(children.stats[index * this.posix.STAT_FIELDS]!);
    return this.direntTypes.get(children.direntTypes[index]!);
  }

  /** The metadata of child `index` of a listChildren result (which has no error for it). */
  fromChildren(children: ListedChildren, index: number): FileMetadata {
    const width = this.posix.STAT_FIELDS;
    const f = children.stats.subarray(index * width, (index + 1) * width);
    const fields: StatFields = {
      mode: f[0]!, uid: f[1]!, gid: f[2]!, size: f[3]!,
      // st_ino, st_dev and st_rdev are unsigned 64-bit: the native side hands them over as signed.
      ino: BigInt.asUintN(64, f[4]!), dev: BigInt.asUintN(64, f[5]!), nlink: f[6]!, rdev: BigInt.asUintN(64, f[7]!),
      atimeNs: f[8]!, mtimeNs: f[9]!, ctimeNs: f[10]!,
    };
    return this.build(typeOf(fields.mode), fields, children.targets[index], children.xattrs[index] ?? []);
  }

  private build(type: FileMetadata['type'], stats: StatFields, target: Buffer | undefined, xattrs: Xattr[]): FileMetadata {
    const metadata: FileMetadata = {
      type,
      mode: Number(stats.mode) & 0o7777,
      uid: Number(stats.uid),
      gid: Number(stats.gid),
      mtimeNs: stats.mtimeNs,
      ctimeNs: stats.ctimeNs,
      atimeNs: stats.atimeNs,
      size: type === 'file' ? Number(stats.size) : 0,
      inode: stats.ino,
      device: stats.dev,
      links: Number(stats.nlink),
    };
    this.addOwnerNames(metadata);
    if (type === 'chardev' || type === 'blockdev') metadata.rdev = stats.rdev;
    if (target !== undefined) {
      metadata.target = target;
      metadata.size = target.length;
    }
    if (xattrs.length > 0) metadata.xattrs = xattrs;
    return metadata;
  }

  private addOwnerNames(metadata: FileMetadata): void {
    const user = this.userName(metadata.uid);
    const group = this.groupName(metadata.gid);
    if (user !== undefined) metadata.user = user;
    if (group !== undefined) metadata.group = group;
  }

  private userName(uid: number): string | undefined {
    if (!this.users.has(uid)) this.users.set(uid, this.posix.userName(uid));
    return this.users.get(uid);
  }

  private groupName(gid: number): string | undefined {
    if (!this.groups.has(gid)) this.groups.set(gid, this.posix.groupName(gid));
    return this.groups.get(gid);
  }
}
