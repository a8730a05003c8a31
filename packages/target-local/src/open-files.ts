import { open, type FileHandle } from 'node:fs/promises';

/** Files kept open between ranged reads (the least recently used is closed beyond this). */
const KEPT_OPEN = 16;
/**
 * How long a file stays open after its last read. Not for long: a pack that `prune` deletes
 * meanwhile keeps its disk space until it is closed, and a daemon lives for months.
 */
const IDLE_MS = 2000;

interface OpenFile {
  opened: Promise<{ handle: FileHandle; size: number }>;
  /** Reads under way with it. */
  users: number;
  lastUsed: number;
  /** Forgotten (evicted, replaced, removed): closed once its last read ends. */
  retired: boolean;
}

/**
 * Read-only handles of the files that ranged reads went to lately, kept open for the next ones.
 * A restore or an incremental backup reads thousands of blobs from the same few packs; opening,
 * fstat-ing and closing the pack for every blob cost the main thread 440 ms of a 2.8 s unchanged
 * file backup. The size is taken once, when the file is opened: what is read this way (packs)
 * never changes once written, and a put or remove of the same path through the target forgets
 * the handle, so that the next read opens the new file.
 */
export class OpenFiles {
  readonly #files = new Map<string, OpenFile>();
  #idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly keptOpen = KEPT_OPEN,
    private readonly idleMs = IDLE_MS,
  ) {}

  /** Runs `read` with the file open and its size; a failure of `open` or `read` forgets the handle. */
  async use<T>(path: string, read: (handle: FileHandle, size: number) => Promise<T>): Promise<T> {
    const file = this.#take(path);
    file.users++;
    try {
      const { handle, size } = await file.opened;
      return await read(handle, size);
    } catch (err) {
      this.forget(path, file);
      throw err;
    } finally {
      file.users--;
      file.lastUsed = performance.now();
      this.#afterUse(file);
    }
  }

  /** Stops reusing the handle of `path` (the file was replaced or removed); it closes once unused. */
  forget(path: string, file = this.#files.get(path)): void {
    if (!file || this.#files.get(path) !== file) return;
    this.#files.delete(path);
    file.retired = true;
    if (file.users === 0) close(file);
  }

  /** Closes every handle (those in use once their reads end). */
  closeAll(): void {
    for (const path of [...this.#files.keys()]) this.forget(path);
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }

  /** The entry of `path`, opened if need be, moved to the most recently used end. */
  #take(path: string): OpenFile {
    let file = this.#files.get(path);
    if (file) this.#files.delete(path);
    else file = { opened: openWithSize(path), users: 0, lastUsed: 0, retired: false };
    this.#files.set(path, file);
    return file;
  }

  #afterUse(file: OpenFile): void {
    if (file.retired) {
      if (file.users === 0) close(file);
      return;
    }
    // Map order is use order: the first ones are the least recently used.
    for (const [path, other] of this.#files) {
      if (this.#files.size <= this.keptOpen) break;
      if (other.users === 0) this.forget(path, other);
    }
    this.#idleTimer ??= setTimeout(() => this.#closeIdle(), this.idleMs).unref();
  }

  #closeIdle(): void {
    this.#idleTimer = undefined;
    const now = performance.now();
    for (const [path, file] of this.#files) if (file.users === 0 && now - file.lastUsed >= this.idleMs) this.forget(path, file);
    if (this.#files.size > 0) this.#idleTimer = setTimeout(() => this.#closeIdle(), this.idleMs).unref();
  }
}

async function openWithSize(path: string): Promise<{ handle: FileHandle; size: number }> {
  const handle = await open(path, 'r');
  try {
    return { handle, size: (await handle.stat()).size };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

function close(file: OpenFile): void {
  file.opened.then(({ handle }) => handle.close()).catch(() => undefined);
}
