import { isUtf8 } from 'node:buffer';
import { DamageError } from '../errors.js';

/*
 * A file snapshot's metadata: one tree blob (type 2) per folder, JSON, its entries sorted by
 * name bytes. docs/FORMAT.md ("Trees") is the prose version of this file; change both together.
 *
 * Names and symlink targets are bytes on Linux, not text: a name that is valid UTF-8 is stored
 * as a JSON string (`name`), any other as base64 (`nameBytes`), so every name round-trips.
 * Times are nanoseconds since the epoch as decimal strings (JSON numbers lose them), inode and
 * device numbers decimal strings too (64-bit).
 */

/** What an entry is; sockets are never stored (they cannot be restored as anything useful). */
export type EntryType = 'file' | 'dir' | 'symlink' | 'chardev' | 'blockdev' | 'fifo';

export const ENTRY_TYPES: readonly EntryType[] = ['file', 'dir', 'symlink', 'chardev', 'blockdev', 'fifo'];

/** One extended attribute, raw: POSIX ACLs are the `system.posix_acl_access` and `system.posix_acl_default` attributes. */
export interface Xattr {
  name: string;
  value: Buffer;
}

/** A stretch of a file's content stored as one blob. Bytes no chunk covers are a hole (zeros), restored sparse. */
export interface ContentChunk {
  offset: number;
  length: number;
  /** Blob id, hex. */
  id: string;
}

/** The metadata of one file, folder, link, device node or FIFO, as lstat and the xattr calls report it. */
export interface EntryMetadata {
  type: EntryType;
  /** Permission bits with setuid, setgid and sticky (`st_mode & 0o7777`). */
  mode: number;
  uid: number;
  gid: number;
  /** Names of the owner and group when the system knows them (restore maps by number; names are for display). */
  user?: string;
  group?: string;
  mtimeNs: bigint;
  ctimeNs: bigint;
  atimeNs: bigint;
  /** Regular file: its length; symlink: the target's length; otherwise 0. */
  size: number;
  inode: bigint;
  device: bigint;
  /** Hard link count: entries with the same device and inode and `links > 1` are restored as one file, linked. */
  links: number;
  /** Device number of a chardev or blockdev node (`st_rdev`). */
  rdev?: bigint;
  /** Symlink target, bytes. */
  target?: Buffer;
  /** Extended attributes, sorted by name; absent when there are none. */
  xattrs?: Xattr[];
}

/** One entry of a tree: a name, its metadata and what it holds. */
export interface TreeEntry extends EntryMetadata {
  name: Buffer;
  /** A regular file's content, in offset order. */
  content?: ContentChunk[];
  /** A folder's tree blob id, hex. */
  subtree?: string;
  /** The file changed while it was read: its content is whatever was read, which may mix versions. */
  changed?: boolean;
  /** Why the entry's content (file) or children (folder) are missing or incomplete. */
  error?: string;
}

export const TREE_VERSION = 1;
/** A tree as `encodeTree` writes it: this, the entries' JSON separated by commas, and the tail. */
const TREE_HEAD = Buffer.from(`{"version":${TREE_VERSION},"entries":[`);
const TREE_TAIL = ']}';
const COMMA = 0x2c;

/** Sorts entries by name bytes, the order trees are stored in (and a reader may rely on). */
export function compareNames(a: Buffer, b: Buffer): number {
  return Buffer.compare(a, b);
}

/** The tree blob of a folder: the entries, sorted by name bytes. Names must be unique. */
export function encodeTree(entries: readonly TreeEntry[]): Buffer {
  return treeOfEncodedEntries(entries.map((entry) => ({ name: entry.name, text: encodeEntry(entry) })));
}

/** One entry as its tree stores it: a piece of `treeOfEncodedEntries`'s input, made as soon as the entry is known. */
export function encodeEntry(entry: TreeEntry): string {
  return JSON.stringify(storedEntry(entry));
}

/**
 * The tree blob of entries already encoded (`encodeEntry`), sorted here by name bytes; names
 * must be unique. The same bytes as `encodeTree` of the entries: the whole tree's JSON is its
 * entries' JSON, in order, inside a fixed frame.
 */
export function treeOfEncodedEntries(entries: ReadonlyArray<{ name: Buffer; text: string }>): Buffer {
  const sorted = [...entries].sort((a, b) => compareNames(a.name, b.name));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i - 1]!.name.equals(sorted[i]!.name)) throw new Error(`duplicate name ${JSON.stringify(displayName(sorted[i]!.name))} in a tree`);
  }
  // Written piece by piece into a buffer of its own, not joined into one string first: the tree
  // of a folder of 18,000 files is about 6 MB, and its owner can hand the buffer on without a copy.
  let length = TREE_HEAD.length + TREE_TAIL.length + Math.max(0, sorted.length - 1);
  for (const entry of sorted) length += Buffer.byteLength(entry.text);
  const tree = Buffer.allocUnsafeSlow(length);
  let at = TREE_HEAD.copy(tree, 0);
  sorted.forEach((entry, i) => {
    if (i > 0) tree[at++] = COMMA;
    at += tree.write(entry.text, at);
  });
  tree.write(TREE_TAIL, at, 'latin1');
  return tree;
}

/** Parses a tree blob; `id` names it in errors. Anything malformed is damage. */
export function decodeTree(id: string, plain: Buffer): TreeEntry[] {
  const ranges = plain.length >= ENTRY_AT_A_TIME_BYTES ? entryRanges(plain) : undefined;
  if (ranges) {
    const entries: TreeEntry[] = new Array(ranges.length / 2);
    for (let i = 0; i < entries.length; i++) entries[i] = decodedEntry(id, i, () => JSON.parse(plain.toString('utf8', ranges[2 * i], ranges[2 * i + 1])));
    return entries;
  }
  let stored: { version?: unknown; entries?: unknown };
  try {
    stored = JSON.parse(plain.toString('utf8'));
  } catch (err) {
    throw new DamageError(`tree ${id.slice(0, 12)} is not valid JSON`, { cause: err });
  }
  if (stored?.version !== TREE_VERSION || !Array.isArray(stored.entries)) throw new DamageError(`tree ${id.slice(0, 12)} is not a version ${TREE_VERSION} tree`);
  return stored.entries.map((entry, i) => decodedEntry(id, i, () => entry));
}

function decodedEntry(id: string, index: number, stored: () => unknown): TreeEntry {
  try {
    return parsedEntry(stored() as StoredEntry);
  } catch (err) {
    throw new DamageError(`tree ${id.slice(0, 12)} has an invalid entry ${index}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Trees this large are parsed an entry at a time: parsed whole, the tree of a folder of
 * 18,000 files (about 6 MB) became 18,000 parsed objects at once besides the entries made of them,
 * and lived long enough to be promoted, 15-20 MB more of V8's old space at the peak.
 */
const ENTRY_AT_A_TIME_BYTES = 1 << 20;
const [QUOTE, BACKSLASH, OPEN_BRACE, CLOSE_BRACE, OPEN_BRACKET, CLOSE_BRACKET] = [0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d];

/**
 * Where each entry of a tree is (start and end offsets, in pairs), for a tree in exactly the
 * form `encodeTree` writes; undefined for any other, which is then parsed whole (and judged by
 * JSON.parse). Each range is checked by JSON.parse as it is decoded.
 */
function entryRanges(plain: Buffer): number[] | undefined {
  const end = plain.length - TREE_TAIL.length;
  if (!plain.subarray(0, TREE_HEAD.length).equals(TREE_HEAD) || plain.toString('latin1', end) !== TREE_TAIL) return undefined;
  const ranges: number[] = [];
  for (let start = TREE_HEAD.length; start < end; ) {
    const close = plain[start] === OPEN_BRACE ? valueEnd(plain, start, end) : -1;
    if (close < 0 || (close < end && plain[close] !== COMMA)) return undefined;
    ranges.push(start, close);
    start = close + 1;
    if (start === end) return undefined; // a trailing comma
  }
  return ranges;
}

/** The offset just past the object or array that starts at `start`, or -1 when it does not close before `limit`. */
function valueEnd(bytes: Buffer, start: number, limit: number): number {
  let depth = 0;
  let inString = false;
  for (let i = start; i < limit; i++) {
    const byte = bytes[i];
    if (inString) {
      if (byte === BACKSLASH) i++;
      else if (byte === QUOTE) inString = false;
    } else if (byte === QUOTE) inString = true;
    else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) depth++;
    else if ((byte === CLOSE_BRACE || byte === CLOSE_BRACKET) && --depth === 0) return i + 1;
  }
  return -1;
}

/** The name as text for messages and listings: invalid UTF-8 shows as U+FFFD. */
export function displayName(name: Buffer): string {
  return name.toString('utf8');
}

/** True when the bytes are valid UTF-8 that a JSON string carries exactly. */
export function isExactUtf8(bytes: Buffer): boolean {
  // Valid UTF-8 decodes and re-encodes to the same bytes; anything else does not (U+FFFD).
  return isUtf8(bytes);
}

interface StoredEntry {
  name?: string;
  nameBytes?: string;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  user?: string;
  group?: string;
  mtime: string;
  ctime: string;
  atime: string;
  size: number;
  inode: string;
  device: string;
  links: number;
  rdev?: string;
  target?: string;
  targetBytes?: string;
  xattrs?: Array<[string, string]>;
  content?: Array<[number, number, string]>;
  subtree?: string;
  changed?: true;
  error?: string;
}

/**
 * The JSON form of an entry, its keys in the documented order. Built field by field, not with
 * object spreads: a folder of 18,000 files took 340 ms and 46 MB of garbage with spreads, 35 ms
 * and 10 MB without, and every folder of a backup is encoded.
 */
function storedEntry(entry: TreeEntry): StoredEntry {
  const stored = {} as StoredEntry;
  setBytesField(stored, 'name', entry.name);
  stored.type = entry.type;
  stored.mode = entry.mode;
  stored.uid = entry.uid;
  stored.gid = entry.gid;
  if (entry.user !== undefined) stored.user = entry.user;
  if (entry.group !== undefined) stored.group = entry.group;
  stored.mtime = entry.mtimeNs.toString();
  stored.ctime = entry.ctimeNs.toString();
  stored.atime = entry.atimeNs.toString();
  stored.size = entry.size;
  stored.inode = entry.inode.toString();
  stored.device = entry.device.toString();
  stored.links = entry.links;
  if (entry.rdev !== undefined) stored.rdev = entry.rdev.toString();
  if (entry.target !== undefined) setBytesField(stored, 'target', entry.target);
  if (entry.xattrs?.length) stored.xattrs = entry.xattrs.map((x) => [x.name, x.value.toString('base64')]);
  if (entry.content) stored.content = entry.content.map((c) => [c.offset, c.length, c.id]);
  if (entry.subtree !== undefined) stored.subtree = entry.subtree;
  if (entry.changed) stored.changed = true;
  if (entry.error !== undefined) stored.error = entry.error;
  return stored;
}

/** `name`/`target` as text when the bytes are exact UTF-8, else `nameBytes`/`targetBytes` in base64. */
function setBytesField(stored: StoredEntry, key: 'name' | 'target', bytes: Buffer): void {
  if (isExactUtf8(bytes)) stored[key] = bytes.toString('utf8');
  else stored[`${key}Bytes`] = bytes.toString('base64');
}

const HEX_ID = /^[0-9a-f]{64}$/;
const DOT = Buffer.from('.');
const DOT_DOT = Buffer.from('..');
const DECIMAL = /^-?[0-9]+$/;

function parsedEntry(stored: StoredEntry): TreeEntry {
  if (typeof stored !== 'object' || stored === null) throw new Error('not an object');
  const name = bytesOf(stored.name, stored.nameBytes, 'name');
  if (!name || name.length === 0 || name.includes(0x2f) || name.includes(0) || name.equals(DOT) || name.equals(DOT_DOT)) throw new Error('invalid name');
  if (!ENTRY_TYPES.includes(stored.type)) throw new Error(`unknown type ${JSON.stringify(stored.type)}`);
  for (const key of ['mode', 'uid', 'gid', 'size', 'links'] as const) {
    if (!Number.isSafeInteger(stored[key]) || stored[key] < 0) throw new Error(`invalid ${key}`);
  }
  const entry: TreeEntry = {
    name,
    type: stored.type,
    mode: stored.mode & 0o7777,
    uid: stored.uid,
    gid: stored.gid,
    mtimeNs: bigintOf(stored.mtime, 'mtime'),
    ctimeNs: bigintOf(stored.ctime, 'ctime'),
    atimeNs: bigintOf(stored.atime, 'atime'),
    size: stored.size,
    inode: bigintOf(stored.inode, 'inode'),
    device: bigintOf(stored.device, 'device'),
    links: stored.links,
  };
  if (typeof stored.user === 'string') entry.user = stored.user;
  if (typeof stored.group === 'string') entry.group = stored.group;
  if (stored.rdev !== undefined) entry.rdev = bigintOf(stored.rdev, 'rdev');
  const target = bytesOf(stored.target, stored.targetBytes, 'target');
  if (target) entry.target = target;
  if (stored.xattrs !== undefined) entry.xattrs = xattrsOf(stored.xattrs);
  if (stored.content !== undefined) entry.content = contentOf(stored.content, stored.size);
  if (stored.subtree !== undefined) {
    if (typeof stored.subtree !== 'string' || !HEX_ID.test(stored.subtree)) throw new Error('invalid subtree id');
    entry.subtree = stored.subtree;
  }
  if (stored.changed === true) entry.changed = true;
  if (typeof stored.error === 'string') entry.error = stored.error;
  checkShape(entry);
  return entry;
}

/** What each type must and must not carry: a reader never has to guess. */
function checkShape(entry: TreeEntry): void {
  if ((entry.content !== undefined) !== (entry.type === 'file')) throw new Error('content on a non-file, or a file without content');
  if (entry.subtree !== undefined && entry.type !== 'dir') throw new Error('a subtree on a non-folder');
  if (entry.type === 'dir' && entry.subtree === undefined && entry.error === undefined) throw new Error('a folder without a subtree');
  if ((entry.target !== undefined) !== (entry.type === 'symlink')) throw new Error('a target on a non-link, or a link without a target');
  if ((entry.rdev !== undefined) !== (entry.type === 'chardev' || entry.type === 'blockdev')) throw new Error('a device number on a non-device, or a device without one');
}

function bytesOf(text: unknown, base64: unknown, what: string): Buffer | undefined {
  if (typeof text === 'string') return Buffer.from(text, 'utf8');
  if (typeof base64 === 'string') return Buffer.from(base64, 'base64');
  if (text !== undefined || base64 !== undefined) throw new Error(`invalid ${what}`);
  return undefined;
}

function bigintOf(value: unknown, what: string): bigint {
  if (typeof value !== 'string' || !DECIMAL.test(value)) throw new Error(`invalid ${what}`);
  return BigInt(value);
}

function xattrsOf(stored: unknown): Xattr[] {
  if (!Array.isArray(stored)) throw new Error('invalid xattrs');
  return stored.map((pair) => {
    if (!Array.isArray(pair) || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') throw new Error('invalid xattr');
    return { name: pair[0], value: Buffer.from(pair[1], 'base64') };
  });
}

function contentOf(stored: unknown, size: number): ContentChunk[] {
  if (!Array.isArray(stored)) throw new Error('invalid content');
  let end = 0;
  return stored.map((chunk) => {
    if (!Array.isArray(chunk)) throw new Error('invalid content chunk');
    const [offset, length, id] = chunk as [unknown, unknown, unknown];
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || (offset as number) < end || (length as number) <= 0) throw new Error('content chunks out of order');
    if (typeof id !== 'string' || !HEX_ID.test(id)) throw new Error('invalid content chunk id');
    end = (offset as number) + (length as number);
    if (end > size) throw new Error('content past the end of the file');
    return { offset: offset as number, length: length as number, id };
  });
}
