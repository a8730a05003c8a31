import { constants, type BigIntStats } from 'node:fs';
import { readlink } from 'node:fs/promises';
import type { FileMetadata, Posix } from '@cairn/core';

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

/** Turns lstat results into FileMetadata: type, owner names (looked up once per id), link targets, xattrs and ACLs. */
export class MetadataReader {
  private readonly users = new Map<number, string | undefined>();
  private readonly groups = new Map<number, string | undefined>();

  constructor(private readonly posix: Posix) {}

  /** The metadata of `path`, whose lstat (bigint) gave `stats`. Rejects when the link target or xattrs cannot be read. */
  async fromStats(path: Buffer, stats: BigIntStats): Promise<FileMetadata> {
    const mode = Number(stats.mode);
    const type = TYPES.get(mode & S_IFMT);
    if (type === undefined) throw Object.assign(new Error(`unknown file type ${(mode & S_IFMT).toString(8)}`), { code: 'EINVAL' });
    const metadata: FileMetadata = {
      type,
      mode: mode & 0o7777,
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
    if (type === 'symlink') {
      metadata.target = await readlink(path, { encoding: 'buffer' });
      metadata.size = metadata.target.length;
    }
    if (type !== 'socket') {
      const xattrs = this.posix.listXattrs(path);
      if (xattrs.length > 0) metadata.xattrs = xattrs;
    }
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
