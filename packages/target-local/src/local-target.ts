import { constants } from 'node:fs';
import { chmod, mkdir, open, readdir, readFile, rename, stat as statPath, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { TEMP_PREFIX, TargetError, directIoSpan, tempName, tempWriterIsGone } from '@cairn/core';
import type { ByteRange, Leftovers, ObjectInfo, ObjectWriter, Target, TargetCreateContext, TargetFactory, TargetSettings } from '@cairn/core';
import { errorCode, syncFolder, wrapError, writeAllAt } from './file-io.js';
import { LocalObjectWriter } from './object-writer.js';
import { OpenFiles } from './open-files.js';

export interface LocalTargetSettings extends TargetSettings {
  type: 'local';
  path: string;
}

/*
 * Objects are written as `<folder>/.tmp-<host>-<pid>-<random>` (core's `tempName`) and renamed
 * into place, so a crash leaves at worst such a file behind. `list` skips this prefix, and
 * keys may not use it.
 */
const FILE_MODE = 0o600;
const FOLDER_MODE = 0o700;
const KEY_SEGMENT = /^[a-z0-9_.-]+$/;
const KEY_PREFIX = /^([a-z0-9_.-]+\/)*[a-z0-9_.-]*$/;
/** A key that leads to no file: nothing there, a file where a folder is expected, or a folder where the file should be. */
const NOT_FOUND_CODES = new Set(['ENOENT', 'ENOTDIR', 'EISDIR']);

export const localTargetFactory: TargetFactory = {
  // The root is not created here: only `init` creates a repository, and `put` makes folders as needed.
  async create(settings: TargetSettings, context: TargetCreateContext): Promise<Target> {
    const { path } = settings as LocalTargetSettings;
    return new LocalTarget(resolve(context.baseDir, path));
  },
};

/** A repository in a directory: each key is a file under `root`, with its `/`-separated segments as folders. */
export class LocalTarget implements Target {
  readonly location: string;
  /** A pack is written with direct I/O while the next one fills: a second write in flight only holds another pack in memory. */
  readonly concurrentPuts = 1;
  /** Folder creations under way, so that concurrent puts into a new folder wait for it to be durable. */
  readonly #foldersInProgress = new Map<string, Promise<void>>();
  /** Cleared for good once the filesystem refuses direct I/O. */
  #directWrites = true;
  /** Packs that ranged reads went to lately, kept open for the next ones. */
  readonly #openFiles = new OpenFiles();

  constructor(root: string) {
    this.location = resolve(root);
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const path = this.#pathOf(key);
    const folder = dirname(path);
    const tempPath = join(folder, tempName());
    try {
      await this.#ensureFolder(folder);
      await this.#writeNewFile(tempPath, data);
      await this.#place(tempPath, path);
    } catch (err) {
      await unlink(tempPath).catch(() => undefined);
      throw wrapError(err, 'write', path);
    }
  }

  /**
   * A file written piece by piece under a temporary name in the root folder, moved to its
   * key's folder on commit. Direct I/O as for `put`, while the pieces allow it.
   */
  async openWriter(): Promise<ObjectWriter> {
    const tempPath = join(this.location, tempName());
    try {
      await this.#ensureFolder(this.location);
      return await LocalObjectWriter.create(tempPath, {
        direct: this.#directWrites,
        refusedDirect: () => (this.#directWrites = false),
        commit: async (key) => {
          const path = this.#pathOf(key);
          await this.#ensureFolder(dirname(path));
          await this.#place(tempPath, path);
        },
      });
    } catch (err) {
      throw wrapError(err, 'write', tempPath);
    }
  }

  /** Renames a complete, durable file into place and records the rename durably. */
  async #place(tempPath: string, path: string): Promise<void> {
    await rename(tempPath, path);
    this.#openFiles.forget(path);
    await syncFolder(dirname(path));
  }

  async get(key: string, range?: ByteRange): Promise<Buffer> {
    const path = this.#pathOf(key);
    try {
      if (range === undefined) return await readFile(path);
      return await this.#withRange(path, range.offset, range.length, async (handle) => {
        const buffer = Buffer.allocUnsafe(range.length);
        await fill(handle, path, range.offset, [buffer]);
        return buffer;
      });
    } catch (err) {
      throw wrapErrorUnlessNotFound(err, 'read', path);
    }
  }

  async readInto(key: string, offset: number, into: readonly Uint8Array[]): Promise<void> {
    const path = this.#pathOf(key);
    try {
      const length = into.reduce((sum, buffer) => sum + buffer.length, 0);
      await this.#withRange(path, offset, length, (handle) => fill(handle, path, offset, into));
    } catch (err) {
      throw wrapErrorUnlessNotFound(err, 'read', path);
    }
  }

  async stat(key: string): Promise<ObjectInfo> {
    const path = this.#pathOf(key);
    try {
      const info = await statPath(path);
      if (!info.isFile()) throw notFoundError(path, 'stat');
      return { key, size: info.size };
    } catch (err) {
      throw wrapErrorUnlessNotFound(err, 'stat', path);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    if (!KEY_PREFIX.test(prefix) || prefix.split('/').some((s) => s === '.' || s === '..')) {
      throw new TargetError(`Invalid key prefix '${prefix}' for ${this.location}`);
    }
    // Start at the deepest folder the prefix names in full; `data/a` starts in `data/`.
    const startFolder = prefix.slice(0, prefix.lastIndexOf('/') + 1);
    yield* this.#walk(startFolder, prefix);
  }

  async remove(key: string): Promise<void> {
    const path = this.#pathOf(key);
    this.#openFiles.forget(path);
    try {
      await unlink(path);
    } catch (err) {
      throw wrapErrorUnlessNotFound(err, 'remove', path);
    }
  }

  /** Removes `.tmp-*` files of puts whose writer died: one on this host whose process is gone, or any last modified before `before`. */
  async removeLeftovers(before: Date): Promise<Leftovers> {
    const removed: Leftovers = { count: 0, bytes: 0 };
    const visit = async (folder: string): Promise<void> => {
      const entries = await readdir(folder, { withFileTypes: true }).catch((err: unknown) => {
        if (this.isNotFound(err)) return [];
        throw wrapError(err, 'list', folder);
      });
      for (const entry of entries) {
        const path = join(folder, entry.name);
        if (entry.isDirectory()) await visit(path);
        else if (entry.isFile() && entry.name.startsWith(TEMP_PREFIX)) await removeIfOlder(path, before, removed);
      }
    };
    await visit(this.location);
    return removed;
  }

  isNotFound(err: unknown): boolean {
    return NOT_FOUND_CODES.has(errorCode(err) ?? '');
  }

  dispose(): void {
    this.#openFiles.closeAll();
  }

  /** Runs `read` with the file open, once the range is known to lie inside it. */
  #withRange<T>(path: string, offset: number, length: number, read: (handle: FileHandle) => Promise<T>): Promise<T> {
    return this.#openFiles.use(path, (handle, size) => {
      if (!(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0) || offset + length > size) {
        throw new TargetError(`Cannot read ${length} bytes at offset ${offset} of ${path}: the object has ${size} bytes`);
      }
      return read(handle);
    });
  }

  /**
   * Creates the file `path` holding `data`, durably. Packs arrive in page-aligned memory
   * and go to the disk with direct I/O: through the page cache, each one cost kernel time to
   * copy and to find fresh pages for (a quarter to half a second of CPU per GB here), for
   * data that nothing reads back soon.
   */
  async #writeNewFile(path: string, data: Uint8Array): Promise<void> {
    const span = this.#directWrites ? directIoSpan(data) : undefined;
    if (span && (await this.#writeNewFileDirect(path, span, data.length))) return;
    const handle = await open(path, 'wx', FILE_MODE);
    try {
      // The umask may have taken bits off the mode given to open; set it exactly.
      await handle.chmod(FILE_MODE);
      await writeAllAt(handle, data, 0);
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  /**
   * Writes `span` (whole blocks) with O_DIRECT and cuts the file to `length`. Returns false,
   * with no file left at `path`, when the filesystem refuses direct I/O (EINVAL: ramfs, some
   * FUSE filesystems); from then on this target writes through the page cache.
   */
  async #writeNewFileDirect(path: string, span: Uint8Array, length: number): Promise<boolean> {
    let handle: FileHandle | undefined;
    let refused = false;
    try {
      handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DIRECT, FILE_MODE);
      await handle.chmod(FILE_MODE);
      await writeAllAt(handle, span, 0);
      await handle.truncate(length);
      await handle.sync();
    } catch (err) {
      if (errorCode(err) !== 'EINVAL') throw err;
      refused = true;
    } finally {
      await handle?.close();
    }
    if (refused) {
      this.#directWrites = false;
      // Some filesystems create the file before refusing O_DIRECT.
      await unlink(path).catch((err: unknown) => {
        if (errorCode(err) !== 'ENOENT') throw err;
      });
    }
    return !refused;
  }

  /** Yields the objects under the folder of key prefix `folderKey` (empty or ending in `/`) whose keys start with `prefix`. */
  async *#walk(folderKey: string, prefix: string): AsyncGenerator<ObjectInfo> {
    const folder = join(this.location, folderKey);
    let entries;
    try {
      entries = await readdir(folder, { withFileTypes: true });
    } catch (err) {
      // A folder that does not exist (yet, or any more) holds no objects.
      if (this.isNotFound(err)) return;
      throw wrapError(err, 'list', folder);
    }
    const files: string[] = [];
    for (const entry of entries) {
      const key = folderKey + entry.name;
      if (entry.isDirectory()) {
        const childKey = `${key}/`;
        if (childKey.startsWith(prefix) || prefix.startsWith(childKey)) yield* this.#walk(childKey, prefix);
      } else if (entry.isFile() && !entry.name.startsWith(TEMP_PREFIX) && key.startsWith(prefix)) {
        files.push(key);
      }
    }
    const sizes = await Promise.all(files.map((key) => this.#sizeIfPresent(key)));
    for (const [i, key] of files.entries()) {
      const size = sizes[i];
      if (size !== undefined) yield { key, size };
    }
  }

  /** The size of an object, or undefined when it was removed since its folder was read. */
  async #sizeIfPresent(key: string): Promise<number | undefined> {
    const path = join(this.location, key);
    try {
      return (await statPath(path)).size;
    } catch (err) {
      if (this.isNotFound(err)) return undefined;
      throw wrapError(err, 'list', path);
    }
  }

  #pathOf(key: string): string {
    const segments = key.split('/');
    const valid = segments.every((s) => KEY_SEGMENT.test(s) && s !== '.' && s !== '..' && !s.startsWith(TEMP_PREFIX));
    if (!valid) throw new TargetError(`Invalid object key '${key}' for ${this.location}`);
    return join(this.location, ...segments);
  }

  #ensureFolder(folder: string): Promise<void> {
    let pending = this.#foldersInProgress.get(folder);
    if (pending === undefined) {
      pending = this.#createFolder(folder).finally(() => this.#foldersInProgress.delete(folder));
      this.#foldersInProgress.set(folder, pending);
    }
    return pending;
  }

  /**
   * Creates `folder` and its missing parents with mode 0700, whatever the umask, each one
   * recorded durably in its parent before anything is written inside. In the common case
   * the folder exists and this costs one `mkdir`.
   */
  async #createFolder(folder: string): Promise<void> {
    let created: boolean;
    try {
      created = await makeFolder(folder);
    } catch (err) {
      const parent = dirname(folder);
      if (errorCode(err) !== 'ENOENT' || parent === folder) throw err;
      await this.#ensureFolder(parent);
      created = await makeFolder(folder);
    }
    if (!created) return;
    await chmod(folder, FOLDER_MODE);
    await syncFolder(dirname(folder));
  }
}

/** Makes one folder whose parent exists; false when it was already there. */
async function makeFolder(folder: string): Promise<boolean> {
  try {
    await mkdir(folder, FOLDER_MODE);
    return true;
  } catch (err) {
    if (errorCode(err) === 'EEXIST') return false;
    throw err;
  }
}

/** Fills `into` with the file's bytes from `offset` on, with as few `preadv` calls as the kernel allows. */
async function fill(handle: FileHandle, path: string, offset: number, into: readonly Uint8Array[]): Promise<void> {
  let pending = into.filter((buffer) => buffer.length > 0);
  for (let filled = 0; pending.length > 0; ) {
    const { bytesRead } = await handle.readv(pending, offset + filled);
    if (bytesRead === 0) throw new TargetError(`${path} ended at ${offset + filled} bytes while being read`);
    filled += bytesRead;
    pending = unfilled(pending, bytesRead);
  }
}

/** What is left of `buffers` once their first `count` bytes are filled. */
function unfilled(buffers: readonly Uint8Array[], count: number): Uint8Array[] {
  const rest: Uint8Array[] = [];
  for (const buffer of buffers) {
    if (count >= buffer.length) count -= buffer.length;
    else {
      rest.push(count > 0 ? buffer.subarray(count) : buffer);
      count = 0;
    }
  }
  return rest;
}

async function removeIfOlder(path: string, before: Date, removed: Leftovers): Promise<void> {
  const info = await statPath(path).catch(() => undefined);
  if (!info || (info.mtimeMs >= before.getTime() && !tempWriterIsGone(basename(path)))) return;
  await unlink(path).then(
    () => {
      removed.count++;
      removed.bytes += info.size;
    },
    () => undefined,
  );
}

function notFoundError(path: string, syscall: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`ENOENT: no such object, ${syscall} '${path}'`), { code: 'ENOENT', path, syscall });
}

/** Keeps not-found errors as they are, so that `isNotFound` recognises them. */
function wrapErrorUnlessNotFound(err: unknown, action: string, path: string): unknown {
  return NOT_FOUND_CODES.has(errorCode(err) ?? '') ? err : wrapError(err, action, path);
}
