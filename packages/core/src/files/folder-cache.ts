import { Blake3Hasher, blake3 } from '@napi-rs/blake-hash';
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, rm, stat } from 'node:fs/promises';
import { writeFileAtomically } from '../daemon/state-file.js';
import { dirname, join } from 'node:path';
import type { BlobIndex, Repository } from '../repository/repository.js';
import type { FileMetadata, ListedEntry } from './file-source.js';

/*
 * The folder cache: what a files backup learned about each folder, kept on the machine that
 * backs up (like borg's files cache), so that the next backup of the same job need not fetch
 * and decode the parent snapshot's tree of a folder whose listing has not changed. For each
 * folder whose tree holds no error and no file that changed while read it keeps: a keyed hash
 * of the folder's path, a keyed hash of its listing (every field of every entry the job
 * includes, atime included: the `fingerprint`), the id of the tree that listing gave, and what
 * the folder's own files add to the snapshot's statistics.
 *
 * A folder whose listing has the same fingerprint, and whose subfolders all end with the trees
 * the cache names for them, has the tree the cache names: a backup without the cache would
 * have found every entry equal to the parent's and taken the parent's tree. The cache is only
 * used with the snapshot it was written for as the parent, while no prune is under way and
 * every index file it saw is still there (see FolderCacheHeader): a repair or a prune that
 * dropped blobs makes the next backup check everything against the parent's trees again.
 * Hashes, not names: the file holds no path, name or metadata in the clear.
 */

const MAGIC = Buffer.from('cairn folder cache 1\n');
const KEY_LENGTH = 16;
const FINGERPRINT_LENGTH = 16;
const TREE_ID_LENGTH = 32;
/** key ‖ fingerprint ‖ tree id ‖ files u32 ‖ chunks u32 ‖ bytes f64 */
const RECORD_LENGTH = KEY_LENGTH + FINGERPRINT_LENGTH + TREE_ID_LENGTH + 16;
const CHECKSUM_LENGTH = 32;

/** What the cache knows of one folder. */
export interface CachedFolder {
  fingerprint: Buffer;
  /** The folder's tree blob id, hex. */
  treeId: string;
  /** The folder's own regular files (not its subfolders'): how many, their chunks and their bytes. */
  files: number;
  chunks: number;
  bytes: number;
}

/** Which backup a cache file describes; it is used only for a backup whose parent is that snapshot. */
export interface FolderCacheHeader {
  repository: string;
  job: string;
  /** The snapshot the folders' trees belong to. */
  snapshot: string;
  /** The index files the repository had when the snapshot was saved. */
  indexFiles: string[];
}

/** Hashes paths and listings with a key of their own, derived from the repository's blob id key. */
export class FolderHasher {
  readonly #hasher: Blake3Hasher;

  constructor(blobIdKey: Buffer) {
    const derive = Blake3Hasher.newKeyed(blobIdKey);
    derive.update(Buffer.from('cairn folder cache key 1'));
    this.#hasher = Blake3Hasher.newKeyed(derive.digestBuffer());
  }

  pathKey(path: Buffer): Buffer {
    this.#hasher.reset();
    this.#hasher.update(path);
    return this.#hasher.digestBuffer().subarray(0, KEY_LENGTH);
  }

  /** The listing's fingerprint: entries in the order given, every field of each (see FINGERPRINTED). */
  fingerprint(entries: readonly ListedEntry[]): Buffer {
    const writer = new FieldWriter();
    for (const { name, metadata } of entries) writeEntry(writer, name, metadata);
    this.#hasher.reset();
    this.#hasher.update(writer.bytes());
    return this.#hasher.digestBuffer().subarray(0, FINGERPRINT_LENGTH);
  }
}

/**
 * Every field of FileMetadata, each written by writeEntry: a field added to the metadata and not
 * here fails to compile, so no change of it can go unnoticed by the fingerprint.
 */
const FINGERPRINTED: Record<keyof FileMetadata, true> = {
  type: true, mode: true, uid: true, gid: true, user: true, group: true, mtimeNs: true, ctimeNs: true, atimeNs: true,
  size: true, inode: true, device: true, links: true, rdev: true, target: true, xattrs: true,
};
export const FINGERPRINTED_FIELDS = Object.keys(FINGERPRINTED) as Array<keyof FileMetadata>;

function writeEntry(out: FieldWriter, name: Buffer, m: FileMetadata): void {
  out.blob(name);
  out.text(m.type);
  out.number(m.mode);
  out.number(m.uid);
  out.number(m.gid);
  out.optionalText(m.user);
  out.optionalText(m.group);
  out.bigint(m.mtimeNs);
  out.bigint(m.ctimeNs);
  out.bigint(m.atimeNs);
  out.number(m.size);
  out.bigint(m.inode);
  out.bigint(m.device);
  out.number(m.links);
  out.bigint(m.rdev ?? -1n);
  if (m.target) out.blob(m.target);
  else out.number(-1);
  out.number(m.xattrs?.length ?? -1);
  for (const xattr of m.xattrs ?? []) {
    out.text(xattr.name);
    out.blob(xattr.value);
  }
}

/** Fields written one after the other, each with its length or as a fixed 8 bytes: no two listings write the same bytes. */
class FieldWriter {
  #buffer = Buffer.allocUnsafe(4096);
  #length = 0;

  number(value: number): void {
    this.#room(8);
    this.#length = this.#buffer.writeDoubleLE(value, this.#length);
  }

  bigint(value: bigint): void {
    this.#room(8);
    this.#length = this.#buffer.writeBigInt64LE(BigInt.asIntN(64, value), this.#length);
  }

  blob(value: Uint8Array): void {
    this.number(value.length);
    this.#room(value.length);
    this.#buffer.set(value, this.#length);
    this.#length += value.length;
  }

  /** As `blob` of its UTF-8 bytes, written in place (no Buffer per string). */
  text(value: string): void {
    this.#room(8 + 3 * value.length);
    const written = this.#buffer.write(value, this.#length + 8, 'utf8');
    this.#buffer.writeDoubleLE(written, this.#length);
    this.#length += 8 + written;
  }

  optionalText(value: string | undefined): void {
    if (value === undefined) this.number(-1);
    else this.text(value);
  }

  bytes(): Buffer {
    return this.#buffer.subarray(0, this.#length);
  }

  #room(more: number): void {
    if (this.#length + more <= this.#buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(2 * this.#buffer.length, this.#length + more));
    this.#buffer.copy(grown, 0, 0, this.#length);
    this.#buffer = grown;
  }
}

/** A cache file's folders, looked up by path key: one buffer of sorted records, no object per folder. */
export class FolderCacheReader {
  readonly #records: Buffer;
  readonly count: number;

  constructor(records: Buffer) {
    this.#records = records;
    this.count = records.length / RECORD_LENGTH;
  }

  get(pathKey: Buffer): CachedFolder | undefined {
    let low = 0;
    let high = this.count - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const at = middle * RECORD_LENGTH;
      const order = this.#records.compare(pathKey, 0, KEY_LENGTH, at, at + KEY_LENGTH);
      if (order === 0) return decodeRecord(this.#records.subarray(at, at + RECORD_LENGTH));
      if (order < 0) low = middle + 1;
      else high = middle - 1;
    }
    return undefined;
  }
}

/** The folders of the backup running now, as it finishes them: records in one growing buffer, no object per folder. */
export class FolderCacheWriter {
  #records = Buffer.allocUnsafe(64 * RECORD_LENGTH);
  #count = 0;

  add(pathKey: Buffer, folder: CachedFolder): void {
    if ((this.#count + 1) * RECORD_LENGTH > this.#records.length) {
      const grown = Buffer.allocUnsafe(2 * this.#records.length);
      this.#records.copy(grown, 0, 0, this.#count * RECORD_LENGTH);
      this.#records = grown;
    }
    encodeRecord(this.#records.subarray(this.#count * RECORD_LENGTH, ++this.#count * RECORD_LENGTH), pathKey, folder);
  }

  get count(): number {
    return this.#count;
  }

  /** The records sorted by key, as a reader takes them. */
  sorted(): Buffer {
    const records = this.#records;
    const order = Array.from({ length: this.#count }, (_, i) => i * RECORD_LENGTH);
    order.sort((a, b) => records.compare(records, b, b + KEY_LENGTH, a, a + KEY_LENGTH));
    const sorted = Buffer.allocUnsafe(this.#count * RECORD_LENGTH);
    order.forEach((at, i) => records.copy(sorted, i * RECORD_LENGTH, at, at + RECORD_LENGTH));
    return sorted;
  }
}

function encodeRecord(record: Buffer, pathKey: Buffer, folder: CachedFolder): void {
  pathKey.copy(record, 0, 0, KEY_LENGTH);
  folder.fingerprint.copy(record, KEY_LENGTH, 0, FINGERPRINT_LENGTH);
  let at = KEY_LENGTH + FINGERPRINT_LENGTH;
  at += record.write(folder.treeId, at, TREE_ID_LENGTH, 'hex');
  at = record.writeUInt32LE(folder.files, at);
  at = record.writeUInt32LE(folder.chunks, at);
  record.writeDoubleLE(folder.bytes, at);
}

function decodeRecord(record: Buffer): CachedFolder {
  let at = KEY_LENGTH;
  const fingerprint = record.subarray(at, (at += FINGERPRINT_LENGTH));
  const treeId = record.toString('hex', at, (at += TREE_ID_LENGTH));
  const files = record.readUInt32LE(at);
  const chunks = record.readUInt32LE(at + 4);
  const bytes = record.readDoubleLE(at + 8);
  return { fingerprint, treeId, files, chunks, bytes };
}

/**
 * The reader of a cache file and what it describes; undefined when there is none, it is damaged
 * or of another format, or it is not the process's user's own (or others may write it): a cache
 * someone else wrote could hide changes from the backups.
 */
export async function readFolderCache(file: string): Promise<{ header: FolderCacheHeader; folders: FolderCacheReader } | undefined> {
  let bytes: Buffer;
  try {
    const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const stat = await handle.stat();
      if (!stat.isFile() || stat.uid !== process.geteuid?.() || (stat.mode & 0o022) !== 0) return undefined;
      bytes = await handle.readFile();
    } finally {
      await handle.close();
    }
  } catch {
    return undefined;
  }
  if (bytes.length < MAGIC.length + CHECKSUM_LENGTH || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const body = bytes.subarray(0, bytes.length - CHECKSUM_LENGTH);
  if (!blake3(body).equals(bytes.subarray(body.length))) return undefined;
  const headerEnd = body.indexOf(0x0a, MAGIC.length);
  if (headerEnd < 0) return undefined;
  const records = body.subarray(headerEnd + 1);
  if (records.length % RECORD_LENGTH !== 0) return undefined;
  try {
    const header = JSON.parse(body.toString('utf8', MAGIC.length, headerEnd)) as FolderCacheHeader;
    return { header, folders: new FolderCacheReader(records) };
  } catch {
    return undefined;
  }
}

/** Writes the cache file whole under a temporary name, then renames it over the old one: a reader sees one or the other. */
export async function writeFolderCache(file: string, header: FolderCacheHeader, folders: FolderCacheWriter): Promise<void> {
  const body = Buffer.concat([MAGIC, Buffer.from(`${JSON.stringify(header)}\n`), folders.sorted()]);
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await writeFileAtomically(file, Buffer.concat([body, blake3(body)]), 0o600);
  await forgetOld(dirname(file));
}

/** A job's cache file not written for this long (the job or its repository is gone) goes when another is written. */
const KEPT_FOR_MS = 30 * 24 * 3600 * 1000;

async function forgetOld(folder: string): Promise<void> {
  try {
    for (const name of await readdir(folder)) {
      const path = join(folder, name);
      if (Date.now() - (await stat(path)).mtimeMs > KEPT_FOR_MS) await rm(path, { force: true });
    }
  } catch {
    // one that went meanwhile: tried again after the next backup
  }
}

/** A files backup's use of the folder cache: what it may trust of the last one, and how it saves its own. */
export interface FolderCacheSession {
  hasher: FolderHasher;
  previous?: FolderCacheReader;
  /** Why the last backup's folders are not used, when the backup has a parent but no `previous`. */
  notUsed?: string;
  next: FolderCacheWriter;
  /** Saves the folders of the backup that saved `snapshot`, replacing the file. */
  save(snapshot: string): Promise<void>;
}

/**
 * Opens the folder cache of a job in `folder` (undefined: no cache), trusting the file only if
 * it describes `parent` in this repository, no prune is under way (prune marks would make the
 * index leave blobs out that the cache's trees name) and every index file it saw is still there.
 */
export async function openFolderCache(folder: string | undefined, repository: Repository, index: BlobIndex, job: string, parent: string | undefined): Promise<FolderCacheSession | undefined> {
  if (folder === undefined) return undefined;
  const repositoryId = repository.config.id;
  const file = join(folder, 'folders', `${repositoryId}-${createHash('sha256').update(job).digest('hex').slice(0, 32)}`);
  const hasher = new FolderHasher(repository.masterKey.blobId);
  const next = new FolderCacheWriter();
  const save = async (snapshot: string) => writeFolderCache(file, { repository: repositoryId, job, snapshot, indexFiles: await repository.listIds('index') }, next);
  if (parent === undefined) return { hasher, next, save };
  const kept = await readFolderCache(file);
  const notUsed = kept === undefined ? `none is kept in ${file} (or it is damaged, or not this user's own)` : distrust(kept.header, { repository: repositoryId, job, parent, index });
  return { hasher, ...(notUsed === undefined ? { previous: kept!.folders } : { notUsed }), next, save };
}

/** Why a cache file must not be used for this backup; undefined when it may. */
function distrust(header: FolderCacheHeader, backup: { repository: string; job: string; parent: string; index: BlobIndex }): string | undefined {
  if (header.repository !== backup.repository || header.job !== backup.job) return 'it was written for another repository or job';
  if (header.snapshot !== backup.parent) return `it was written with snapshot ${header.snapshot.slice(0, 12)}, and the parent is ${backup.parent.slice(0, 12)}`;
  if (backup.index.marked.size > 0) return 'a prune is under way';
  if (backup.index.unreadable.length > 0) return 'an index file cannot be read';
  if (!header.indexFiles.every((id) => backup.index.files.has(id))) return 'index files it saw are gone (a prune or repair since)';
  return undefined;
}
