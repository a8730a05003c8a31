/*
 * A tar stream (POSIX pax: ustar headers, with an extended header where a field does not fit:
 * long names and link targets (bytes as they are), nanosecond times, large sizes and ids, long owner
 * names, extended attributes as SCHILY.xattr records, which GNU tar and bsdtar read).
 */

const BLOCK = 512;
const ZEROS = Buffer.alloc(BLOCK * 2);

export type TarEntryType = 'file' | 'hardlink' | 'symlink' | 'chardev' | 'blockdev' | 'dir' | 'fifo';

const TYPE_FLAGS: Record<TarEntryType, string> = { file: '0', hardlink: '1', symlink: '2', chardev: '3', blockdev: '4', dir: '5', fifo: '6' };

export interface TarEntry {
  /** Relative path, bytes; a folder's gets its trailing slash here. */
  path: Buffer;
  type: TarEntryType;
  mode: number;
  uid: number;
  gid: number;
  user?: string;
  group?: string;
  /** Content length (files only; 0 for the rest). */
  size: number;
  mtimeNs: bigint;
  /** Symlink target, or the path a hard link names. */
  link?: Buffer;
  rdev?: bigint;
  xattrs?: Array<{ name: string; value: Buffer }>;
}

/** Writes tar entries through `write` (which applies backpressure); `finish` writes the end-of-archive blocks. */
export class TarWriter {
  #written = 0;

  constructor(private readonly write: (bytes: Buffer) => Promise<void>) {}

  get bytesWritten(): number {
    return this.#written;
  }

  /** The header of an entry; a file's `size` bytes must follow through `content`, then `endContent`. */
  async header(entry: TarEntry): Promise<void> {
    const path = entry.type === 'dir' && entry.path[entry.path.length - 1] !== 0x2f ? Buffer.concat([entry.path, Buffer.from('/')]) : entry.path;
    const pax = paxRecords({ ...entry, path });
    if (pax.length > 0) {
      const name = Buffer.concat([Buffer.from('PaxHeaders/'), lastName(path)]).subarray(0, 99);
      await this.#emit(ustarHeader({ ...entry, path: name, type: 'file', link: undefined, size: pax.length }, 'x'));
      await this.content(pax);
      await this.endContent(pax.length);
    }
    await this.#emit(ustarHeader({ ...entry, path }, TYPE_FLAGS[entry.type]));
  }

  content(bytes: Buffer): Promise<void> {
    return this.#emit(bytes);
  }

  /** Pads the content just written (`size` bytes) to a whole block. */
  async endContent(size: number): Promise<void> {
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (pad > 0) await this.#emit(ZEROS.subarray(0, pad));
  }

  finish(): Promise<void> {
    return this.#emit(ZEROS);
  }

  async #emit(bytes: Buffer): Promise<void> {
    this.#written += bytes.length;
    await this.write(bytes);
  }
}

/** Largest value of an octal field of `width` bytes (width - 1 digits and a NUL). */
const maxOctal = (width: number) => 8 ** (width - 1) - 1;

function ustarHeader(entry: TarEntry, typeFlag: string): Buffer {
  const header = Buffer.alloc(BLOCK);
  entry.path.subarray(0, 100).copy(header, 0);
  octal(header, 100, 8, entry.mode & 0o7777);
  octal(header, 108, 8, Math.min(entry.uid, maxOctal(8)));
  octal(header, 116, 8, Math.min(entry.gid, maxOctal(8)));
  octal(header, 124, 12, Math.min(entry.size, maxOctal(12)));
  octal(header, 136, 12, Math.max(0, Math.min(Number(entry.mtimeNs / 1_000_000_000n), maxOctal(12))));
  header.write(typeFlag, 156, 'latin1');
  entry.link?.subarray(0, 100).copy(header, 157);
  header.write('ustar\u000000', 257, 'latin1');
  Buffer.from(entry.user ?? '').subarray(0, 31).copy(header, 265);
  Buffer.from(entry.group ?? '').subarray(0, 31).copy(header, 297);
  if (entry.rdev !== undefined) {
    const { major, minor } = deviceNumbers(entry.rdev);
    octal(header, 329, 8, Math.min(major, maxOctal(8)));
    octal(header, 337, 8, Math.min(minor, maxOctal(8)));
  }
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(sum.toString(8).padStart(6, '0') + '\u0000 ', 148, 'latin1');
  return header;
}

function octal(header: Buffer, offset: number, width: number, value: number): void {
  header.write(value.toString(8).padStart(width - 1, '0') + '\u0000', offset, 'latin1');
}

/** The pax records the entry needs beyond what its ustar header holds; empty when none. */
function paxRecords(entry: TarEntry): Buffer {
  const records: Buffer[] = [];
  const add = (key: string, value: Buffer | string) => records.push(paxRecord(key, typeof value === 'string' ? Buffer.from(value) : value));
  // Names that are not UTF-8 go in raw, as GNU tar writes and reads them (it warns about `hdrcharset`).
  if (entry.path.length > 100) add('path', entry.path);
  if (entry.link && entry.link.length > 100) add('linkpath', entry.link);
  if (entry.size > maxOctal(12)) add('size', String(entry.size));
  if (entry.uid > maxOctal(8)) add('uid', String(entry.uid));
  if (entry.gid > maxOctal(8)) add('gid', String(entry.gid));
  if (Buffer.byteLength(entry.user ?? '') > 31) add('uname', entry.user!);
  if (Buffer.byteLength(entry.group ?? '') > 31) add('gname', entry.group!);
  if (entry.mtimeNs % 1_000_000_000n !== 0n || entry.mtimeNs < 0n) add('mtime', paxTime(entry.mtimeNs));
  // ACLs are system.posix_acl_* attributes in binary form, which tar tools do not take as xattrs.
  for (const xattr of entry.xattrs ?? []) if (!xattr.name.startsWith('system.posix_acl_')) add(`SCHILY.xattr.${xattr.name}`, xattr.value);
  return Buffer.concat(records);
}

/** `<length> <key>=<value>\n`, the length counting itself. */
function paxRecord(key: string, value: Buffer): Buffer {
  const body = 1 + Buffer.byteLength(key) + 1 + value.length + 1;
  let length = body + String(body).length;
  if (String(length).length !== String(body).length) length = body + String(length).length;
  return Buffer.concat([Buffer.from(`${length} ${key}=`), value, Buffer.from('\n')]);
}

function paxTime(ns: bigint): string {
  const negative = ns < 0n;
  const abs = negative ? -ns : ns;
  return `${negative ? '-' : ''}${abs / 1_000_000_000n}.${(abs % 1_000_000_000n).toString().padStart(9, '0')}`;
}

/** Linux's split of a device number (glibc's gnu_dev_major/minor). */
export function deviceNumbers(rdev: bigint): { major: number; minor: number } {
  const major = Number(((rdev >> 8n) & 0xfffn) | (BigInt.asUintN(32, rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | (BigInt.asUintN(32, rdev >> 12n) & ~0xffn));
  return { major, minor };
}

function lastName(path: Buffer): Buffer {
  const trimmed = path[path.length - 1] === 0x2f ? path.subarray(0, -1) : path;
  return trimmed.subarray(trimmed.lastIndexOf(0x2f) + 1);
}
