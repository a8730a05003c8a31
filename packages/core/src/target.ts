import type { IDisposable } from './lifecycle.js';

/** Byte range of a ranged read: `length` bytes starting at `offset`. */
export interface ByteRange {
  offset: number;
  length: number;
}

export interface ObjectInfo {
  /** Full key, e.g. `data/ab/ab12…`. */
  key: string;
  size: number;
}

/**
 * A dumb object store. Keys are `/`-separated relative paths made of `[a-z0-9_.-]`
 * segments; the repository decides their names.
 *
 * Contract (checked by `describeTargetConformance` in `@cairn/core/testing`):
 * - `put` makes an object visible only once complete: a reader sees the whole object
 *   or nothing, even when the process dies mid-write. Putting an existing key replaces it.
 * - `get` of a missing key rejects with an error for which `isNotFound(err)` is true;
 *   so do `stat` and `remove`.
 * - `get` with a range returns exactly those bytes; a range past the end rejects.
 * - `list(prefix)` yields every complete object whose key starts with `prefix`, in no
 *   particular order, never an incomplete one.
 * - Methods may run concurrently.
 * - `put` must not keep `data` once its promise settles: the caller fills the same memory
 *   with the next object. Packs come in page-aligned memory, which a target writing to a
 *   file can hand to direct I/O (see `directIoSpan`).
 */
export interface Target extends IDisposable {
  /** A human-readable location for messages, e.g. `/srv/repo` or `s3://bucket/prefix`. */
  readonly location: string;
  put(key: string, data: Uint8Array): Promise<void>;
  get(key: string, range?: ByteRange): Promise<Buffer>;
  /**
   * Optional: reads the object's bytes from `offset` on straight into `into`, filling each
   * buffer in turn (as `preadv` does), and fails as `get` of that range would. A restore reads
   * blobs into its chunk slots this way, so a pack read costs no memory of its own; without
   * it the repository copies from `get`.
   */
  readInto?(key: string, offset: number, into: readonly Uint8Array[]): Promise<void>;
  /**
   * Optional: how many `put`s are worth running at once (default 3). A local disk gains nothing
   * past one, and each pack in flight holds a pack's worth of memory; a remote store's latency
   * wants several.
   */
  readonly concurrentPuts?: number;
  /**
   * Optional: starts an object written piece by piece whose key is known only once it is
   * complete (a pack is named by the hash of its bytes). A backup then holds a megabyte or two
   * of a pack in memory instead of the whole pack. The object becomes visible on `commit`,
   * whole, as with `put`; a writer that dies or aborts leaves nothing that `list` shows.
   */
  openWriter?(): Promise<ObjectWriter>;
  stat(key: string): Promise<ObjectInfo>;
  list(prefix: string): AsyncIterable<ObjectInfo>;
  remove(key: string): Promise<void>;
  isNotFound(err: unknown): boolean;
  /**
   * Removes what writers that were killed left behind (temporary files, unfinished multipart
   * uploads) and that was started before `before`; `prune` calls it. Optional.
   */
  removeLeftovers?(before: Date): Promise<Leftovers>;
}

/** An object being written (see `Target.openWriter`). Calls are made one at a time. */
export interface ObjectWriter {
  /**
   * Appends `data`; its memory may be used again once this settles. Pieces that are whole
   * blocks of page-aligned memory (see `directIoSpan`) may go to the disk with direct I/O; so
   * may a last, shorter piece in such memory.
   */
  write(data: Uint8Array): Promise<void>;
  /** Makes what was written visible, complete and durable, as the object `key`. */
  commit(key: string): Promise<void>;
  /** Discards what was written: nothing becomes visible. Never rejects. */
  abort(): Promise<void>;
}

/** What `removeLeftovers` removed. */
export interface Leftovers {
  count: number;
  bytes: number;
}

/** Creates a target from the job file's `target` object (already validated against the contributed schema). */
export interface TargetFactory {
  create(settings: TargetSettings, context: TargetCreateContext): Promise<Target>;
}

export interface TargetSettings {
  type: string;
  [setting: string]: unknown;
}

export interface TargetCreateContext {
  /** Folder that relative paths in the job file are resolved against (the job file's folder). */
  baseDir: string;
  /** Reads a secret given as `{ env }`, `{ file }` or `{ command }` in the job file. */
  readSecret(ref: SecretRef, what: string): Promise<string>;
}

/** Where a secret comes from: an environment variable, a file, or a command's standard output. */
export type SecretRef = { env: string } | { file: string } | { command: string[] };
