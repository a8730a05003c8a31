import { isExactUtf8, type EntryType, type TreeEntry } from '../files/tree.js';

/*
 * How `cairn ls`, `find` and `diff` show the entries of file snapshots: `ls -l` lines for
 * people, and JSON objects for scripts. Names are bytes; on a terminal they are escaped so
 * that no name can move the cursor or hide in a listing; in JSON, a name that is not UTF-8
 * comes with its exact bytes in base64 as well.
 */

const TYPE_LETTERS: Record<EntryType, string> = { file: '-', dir: 'd', symlink: 'l', chardev: 'c', blockdev: 'b', fifo: 'p' };

/** `drwxr-sr-x`, `-rwsr-xr-x`, `drwxrwxrwt`: the type letter and the permission bits as `ls -l` shows them. */
export function modeString(type: EntryType, mode: number): string {
  const triplet = (shift: number, special: number, letter: string) => {
    const bits = (mode >> shift) & 7;
    const x = bits & 1 ? letter : letter.toUpperCase();
    return `${bits & 4 ? 'r' : '-'}${bits & 2 ? 'w' : '-'}${mode & special ? x : bits & 1 ? 'x' : '-'}`;
  };
  return TYPE_LETTERS[type] + triplet(6, 0o4000, 's') + triplet(3, 0o2000, 's') + triplet(0, 0o1000, 't');
}

const C_ESCAPES: Record<number, string> = { 0x07: '\\a', 0x08: '\\b', 0x09: '\\t', 0x0a: '\\n', 0x0b: '\\v', 0x0c: '\\f', 0x0d: '\\r', 0x5c: '\\\\' };

/**
 * A name (or path, or link target) safe to print on a terminal: valid UTF-8 as it is, control
 * characters as C escapes (`\n`, `\x1b`), bytes that are not UTF-8 as `\xNN`, a backslash as
 * `\\` (so the escaped form is unambiguous), like `ls -b`.
 */
export function escapeName(bytes: Buffer): string {
  let out = '';
  for (let i = 0; i < bytes.length; ) {
    const length = sequenceLength(bytes[i]!);
    const sequence = bytes.subarray(i, i + length);
    if (length > 1 && sequence.length === length && isExactUtf8(sequence)) {
      const text = sequence.toString('utf8');
      out += isUnsafeCodePoint(text.codePointAt(0)!) ? `\\u{${text.codePointAt(0)!.toString(16)}}` : text;
      i += length;
      continue;
    }
    const byte = bytes[i]!;
    out += C_ESCAPES[byte] ?? (byte < 0x20 || byte >= 0x7f ? `\\x${byte.toString(16).padStart(2, '0')}` : String.fromCharCode(byte));
    i++;
  }
  return out;
}

/** Bytes of the UTF-8 sequence a lead byte starts (1 for ASCII and for bytes that start none). */
function sequenceLength(lead: number): number {
  if (lead >= 0xc2 && lead <= 0xdf) return 2;
  if (lead >= 0xe0 && lead <= 0xef) return 3;
  if (lead >= 0xf0 && lead <= 0xf4) return 4;
  return 1;
}

/** C1 controls and the characters that reorder or break lines on a terminal. */
function isUnsafeCodePoint(cp: number): boolean {
  return (cp >= 0x80 && cp <= 0x9f) || cp === 0x2028 || cp === 0x2029 || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/** Nanoseconds since the epoch as ISO 8601 in UTC with all nine digits: `2026-12-01T02:00:00.123456789Z`. */
export function isoTimeNs(ns: bigint): string {
  const seconds = ns >= 0n ? ns / 1_000_000_000n : -((-ns + 999_999_999n) / 1_000_000_000n);
  const fraction = ns - seconds * 1_000_000_000n;
  const whole = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  return `${whole}.${fraction.toString().padStart(9, '0')}Z`;
}

/** `2026-12-01 03:00:00` in the local time zone (TZ), to the second, as a listing shows it. */
export function localTime(ns: bigint): string {
  const date = new Date(Number(ns / 1_000_000n));
  const two = (n: number) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
}

/** Major and minor number of a device node, as glibc's `major()`/`minor()` split `st_rdev`. */
export function deviceNumbers(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

/** What the size column shows: bytes, or `major, minor` for a device node, as `ls -l` does. */
function sizeColumn(entry: TreeEntry): string {
  if (entry.rdev === undefined) return String(entry.size);
  const { major, minor } = deviceNumbers(entry.rdev);
  return `${major}, ${minor}`;
}

/** The name column: the escaped label, ` -> target` for a link, and a note when the entry is marked. */
function nameColumn(label: string, entry: TreeEntry): string {
  let text = label;
  if (entry.target !== undefined) text += ` -> ${escapeName(entry.target)}`;
  if (entry.changed) text += '  [changed while read]';
  if (entry.error !== undefined) text += `  [incomplete: ${escapeName(Buffer.from(entry.error))}]`;
  return text;
}

/**
 * `ls -l` lines, columns aligned over all rows: mode, links, user, group, size (or device
 * numbers), modification time (local), and the label (a name or a path, already escaped).
 */
export function longListing(rows: ReadonlyArray<{ label: string; entry: TreeEntry }>): string[] {
  const cells = rows.map(({ label, entry }) => [
    modeString(entry.type, entry.mode),
    String(entry.links),
    entry.user ?? String(entry.uid),
    entry.group ?? String(entry.gid),
    sizeColumn(entry),
    localTime(entry.mtimeNs),
    nameColumn(label, entry),
  ]);
  const widths = [1, 2, 3, 4].map((column) => Math.max(0, ...cells.map((row) => row[column]!.length)));
  return cells.map((row) =>
    [row[0], row[1]!.padStart(widths[0]!), escapeName(Buffer.from(row[2]!)).padEnd(widths[1]!), escapeName(Buffer.from(row[3]!)).padEnd(widths[2]!), row[4]!.padStart(widths[3]!), row[5], row[6]].join(' '),
  );
}

/** An entry as `--json` shows it (`ls`, `find`): every field a script may want, times in ISO with nanoseconds. */
export interface EntryJson {
  path: string;
  /** The path's exact bytes, base64, when it is not UTF-8 (`path` then shows U+FFFD for the bad bytes). */
  pathBytes?: string;
  name: string;
  nameBytes?: string;
  type: EntryType;
  mode: number;
  /** `-rwxr-xr-x` */
  permissions: string;
  uid: number;
  gid: number;
  user?: string;
  group?: string;
  size: number;
  mtime: string;
  ctime: string;
  atime: string;
  links: number;
  inode: string;
  device?: { major: number; minor: number };
  target?: string;
  targetBytes?: string;
  xattrs?: string[];
  changed?: true;
  error?: string;
}

export function entryJson(path: Buffer, entry: TreeEntry): EntryJson {
  // Assigned field by field: a recursive listing builds one per entry (spreads cost 10× more).
  const json = { ...textAndBytes('path', path), ...textAndBytes('name', entry.name) } as unknown as EntryJson;
  json.type = entry.type;
  json.mode = entry.mode;
  json.permissions = modeString(entry.type, entry.mode);
  json.uid = entry.uid;
  json.gid = entry.gid;
  if (entry.user !== undefined) json.user = entry.user;
  if (entry.group !== undefined) json.group = entry.group;
  json.size = entry.size;
  json.mtime = isoTimeNs(entry.mtimeNs);
  json.ctime = isoTimeNs(entry.ctimeNs);
  json.atime = isoTimeNs(entry.atimeNs);
  json.links = entry.links;
  json.inode = entry.inode.toString();
  if (entry.rdev !== undefined) json.device = deviceNumbers(entry.rdev);
  if (entry.target !== undefined) Object.assign(json, textAndBytes('target', entry.target));
  if (entry.xattrs?.length) json.xattrs = entry.xattrs.map((x) => x.name);
  if (entry.changed) json.changed = true;
  if (entry.error !== undefined) json.error = entry.error;
  return json;
}

/** `{ path: text }`, plus `{ pathBytes: base64 }` when the bytes are not UTF-8. */
export function textAndBytes<K extends string>(key: K, bytes: Buffer): Record<string, string> {
  const text = bytes.toString('utf8');
  return isExactUtf8(bytes) ? { [key]: text } : { [key]: text, [`${key}Bytes`]: bytes.toString('base64') };
}
