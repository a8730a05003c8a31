import { constants, type Stats } from 'node:fs';
import { open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { RestoreTargetError, describeSystemError } from '../errors.js';
import { type DeviceNumber, describeBlockDevice, findMounts, readBlockDeviceGeometry, splitDeviceNumber } from '../system/block-device.js';
import { suitsDirectIo } from './aligned-memory.js';
import { loadPosix } from '../files/posix.js';

/**
 * Where a restore writes. An image file is written under a temporary name next to the
 * destination and renamed over it only after the image's digest matched, so a failed
 * restore never leaves a file that looks complete (and never destroys the old one).
 * A block device is written in place, and so is an existing image file of the image's size
 * restored by delta (only what differs is written; a failure leaves it partly restored).
 */
export interface Destination {
  readonly path: string;
  readonly kind: 'file' | 'block-device';
  /** Block devices keep their old content where nothing is written: zero chunks must be written. */
  readonly needsZeros: boolean;
  /**
   * Present for a delta restore: reads what the destination holds now (`into.length` bytes at
   * `offset`), so that chunks it already holds are neither fetched nor written.
   */
  read?(into: Uint8Array, offset: number): Promise<void>;
  write(data: Uint8Array, offset: number): Promise<void>;
  /**
   * Present where zeros can be had without writing them: makes [offset, offset + length) read
   * as zeros (an image file restored in place: a zero range or a punched hole, zeros written
   * only where the file system can do neither; see RangeZeroer). Done in the background: by
   * `commit` at the latest, and a failure fails a later call or `commit`.
   */
  zero?(offset: number, length: number): Promise<void>;
  /** Makes the result durable and visible. */
  commit(): Promise<void>;
  /** Removes a partial file; leaves a device as it is. */
  abort(): Promise<void>;
}

export interface DestinationOptions {
  force: boolean;
  /**
   * Restore by delta where the destination allows: a block device, or an existing image file
   * of exactly `imageSize` bytes (with `force`).
   */
  delta?: boolean;
}

export async function openDestination(path: string, imageSize: number, { force, delta = false }: DestinationOptions): Promise<Destination> {
  const absolute = resolve(path);
  let stats: Stats | undefined;
  try {
    stats = await stat(absolute);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new RestoreTargetError(`Cannot use ${absolute}: ${(err as Error).message}`, { cause: err });
  }
  if (stats?.isBlockDevice()) return openDevice(absolute, stats, imageSize, force, delta);
  if (stats && !stats.isFile()) throw new RestoreTargetError(`${absolute} is neither a regular file nor a block device`);
  if (stats && !force) throw new RestoreTargetError(`${absolute} already exists; add --force to overwrite it`);
  if (stats && delta && stats.size === imageSize) return openImageInPlace(absolute);
  return openImageFile(absolute, imageSize);
}

/**
 * The temporary name of an image file being restored: `.NAME.cairn-restore-<random>-<pid>@<host>`.
 * The owner in it tells the next restore to the same file whether the process is gone.
 */
const TEMP_MARK = '.cairn-restore-';
const TEMP_OWNER = /^[0-9a-f]{12}-(\d+)@(.+)$/;

function tempNameFor(path: string): string {
  return join(dirname(path), `.${basename(path)}${TEMP_MARK}${randomBytes(6).toString('hex')}-${process.pid}@${hostname()}`);
}

/**
 * Removes what earlier restores to `path` left under their temporary names when they were
 * killed midway (nothing could clean up after them): those made on this host by a process
 * that no longer runs. A restore still running, or one from another host sharing the
 * folder, keeps its file.
 */
async function removeLeftovers(path: string): Promise<void> {
  const folder = dirname(path);
  const prefix = `.${basename(path)}${TEMP_MARK}`;
  const names = await readdir(folder).catch(() => [] as string[]);
  for (const name of names) {
    const owner = name.startsWith(prefix) ? TEMP_OWNER.exec(name.slice(prefix.length)) : null;
    if (!owner || owner[2] !== hostname() || processRuns(Number(owner[1]))) continue;
    await unlink(join(folder, name)).catch(() => undefined);
  }
}

function processRuns(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it runs, as another user.
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

async function openImageFile(path: string, imageSize: number): Promise<Destination> {
  await removeLeftovers(path);
  const temp = tempNameFor(path);
  let handle: FileHandle;
  try {
    handle = await open(temp, 'wx', 0o600);
  } catch (err) {
    throw new RestoreTargetError(`Cannot create ${path}: ${(err as Error).message}`, { cause: err });
  }
  // A fresh file of the right size is all holes: zero and unused chunks need no write.
  await handle.truncate(imageSize);
  const writer = new Writer(handle, await openDirect(temp, constants.O_WRONLY));
  return {
    path,
    kind: 'file',
    needsZeros: false,
    write: (data, offset) => writer.write(data, offset).catch((err: unknown) => failed(path, err)),
    async commit() {
      try {
        await writer.settle();
        await handle.sync();
        await handle.close();
        await rename(temp, path);
        const dir = await open(dirname(path), 'r');
        await dir.sync().finally(() => dir.close());
      } catch (err) {
        failed(path, err);
      }
    },
    async abort() {
      await writer.settle().catch(() => undefined);
      await handle.close().catch(() => undefined);
      await unlink(temp).catch(() => undefined);
    },
  };
}

/**
 * An existing image file of the image's size, for a delta restore: read and written in place.
 * Zero chunks must be made zeros (the file may hold data there), without writing them where
 * the file system can (RangeZeroer); the file keeps its holes.
 */
async function openImageInPlace(path: string): Promise<Destination> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r+');
  } catch (err) {
    throw new RestoreTargetError(`Cannot open ${path} for writing: ${(err as Error).message}`, { cause: err });
  }
  const writer = new Writer(handle, await openDirect(path, constants.O_WRONLY));
  const zeros = new RangeZeroer(handle, writer);
  return {
    path,
    kind: 'file',
    needsZeros: true,
    read: (into, offset) => readFully(handle, into, offset).catch((err: unknown) => failedRead(path, err)),
    write: (data, offset) => writer.write(data, offset).catch((err: unknown) => failed(path, err)),
    zero: (offset, length) => zeros.zero(offset, length).catch((err: unknown) => failed(path, err)),
    commit: () => syncAndClose(path, writer, handle, zeros),
    async abort() {
      await zeros.drop();
      await writer.settle().catch(() => undefined);
      await handle.close().catch(() => undefined);
    },
  };
}

/**
 * Ranges queued to be made zeros before the restore waits for them (a few hundred KB): the
 * writer runs far ahead over free space, and stopping it after 64 ranges made the corpus's
 * delta restore 0.2-0.3 s slower again.
 */
const MOST_RANGES_WAITING = 4096;

/** The most zeros written at once where the file system can neither zero a range nor punch it. */
const ZEROS_PER_WRITE = 4 * 1024 * 1024;

/** How a file system makes a range zeros, best first: the first it supports is kept. */
const ZEROING_WAYS = ['zero range', 'punch', 'write'] as const;

/**
 * Makes ranges of a file restored in place read as zeros, in the background, one at a time in
 * the order asked, without writing them where the file system can:
 * - a zero range (FALLOC_FL_ZERO_RANGE over the data in the range): the file's blocks there
 *   become unwritten extents, its holes stay holes, its allocation neither grows nor shrinks;
 * - else a punched hole (FALLOC_FL_PUNCH_HOLE), the blocks freed;
 * - else zeros written.
 * Zero ranges come first because punching frees the blocks, which on a file system mounted with
 * `discard` also discards them: the corpus's delta restore makes 1.7 GB of stale free space
 * zeros in 437 ranges, 0.76-0.84 s of punching against 0.09 s of zero ranges, and the punches
 * (ext4 locks the file while it frees) held up the restore's reads: 2.30-2.86 against 1.84-2.07 s.
 * Ranges are not merged: one punch of hundreds of MiB stalled the reads of the same file for
 * its whole length.
 */
export class RangeZeroer {
  readonly #waiting: Array<{ offset: number; length: number }> = [];
  #draining: Promise<void> | undefined;
  /** The range being made zeros (its failure is handled by #drain). */
  #current: Promise<void> | undefined;
  #way: (typeof ZEROING_WAYS)[number] = ZEROING_WAYS[0];
  #failure: unknown;

  constructor(
    private readonly handle: FileHandle,
    private readonly writer: Writer,
    private readonly mostWaiting = MOST_RANGES_WAITING,
  ) {}

  /**
   * Queues [offset, offset + length), waiting only while the queue is full; throws the error of
   * an earlier range, if one failed.
   */
  async zero(offset: number, length: number): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure;
    this.#waiting.push({ offset, length });
    this.#draining ??= this.#drain();
    while (this.#waiting.length > this.mostWaiting && this.#failure === undefined) await this.#current;
  }

  /** Waits until every queued range reads as zeros; throws the first failure. */
  async settle(): Promise<void> {
    await this.#draining;
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Forgets the ranges not started (a failed restore leaves the file partly restored anyway) and waits for the one under way. */
  async drop(): Promise<void> {
    this.#waiting.length = 0;
    await this.#draining;
  }

  async #drain(): Promise<void> {
    try {
      for (let range = this.#waiting.shift(); range; range = this.#waiting.shift()) {
        this.#current = this.#zeroRange(range.offset, range.length);
        await this.#current;
      }
    } catch (err) {
      this.#failure = err;
      this.#waiting.length = 0;
    } finally {
      this.#draining = undefined;
    }
  }

  async #zeroRange(offset: number, length: number): Promise<void> {
    const { zeroRange, punchHole } = await loadPosix();
    if (this.#way === 'zero range') {
      if (await zeroRange(this.handle.fd, offset, length)) return;
      this.#way = 'punch';
    }
    if (this.#way === 'punch') {
      if (await punchHole(this.handle.fd, offset, length)) return;
      this.#way = 'write';
    }
    const zeros = Buffer.alloc(Math.min(length, ZEROS_PER_WRITE));
    for (let done = 0; done < length; done += zeros.length) await this.writer.write(zeros.subarray(0, Math.min(zeros.length, length - done)), offset + done);
  }
}

async function syncAndClose(path: string, writer: Writer, handle: FileHandle, zeros?: RangeZeroer): Promise<void> {
  try {
    await zeros?.settle();
    await writer.settle();
    await handle.sync();
    await handle.close();
  } catch (err) {
    failed(path, err);
  }
}

async function openDevice(path: string, stats: Stats, imageSize: number, force: boolean, delta: boolean): Promise<Destination> {
  const device = splitDeviceNumber(stats.rdev);
  await refuseDeviceInUse(path, device);
  const geometry = await readBlockDeviceGeometry(device);
  if (!geometry) throw new RestoreTargetError(`Cannot read the size of ${path} from /sys/dev/block`);
  if (geometry.size < imageSize) {
    throw new RestoreTargetError(`${path} holds ${geometry.size} bytes, smaller than the image's ${imageSize} bytes`);
  }
  if (!force) throw new RestoreTargetError(`Restoring onto ${path} overwrites the device; add --force to do it`);
  let handle: FileHandle;
  try {
    // O_EXCL on a block device fails while anything (a mount, another process) holds it exclusively.
    handle = await open(path, constants.O_RDWR | constants.O_EXCL);
  } catch (err) {
    throw new RestoreTargetError(`Cannot open ${path} for writing: ${(err as Error).message}`, { cause: err });
  }
  // The exclusive open above keeps others out; this second, direct one may share the device with it.
  const writer = new Writer(handle, await openDirect(path, constants.O_RDWR));
  return {
    path,
    kind: 'block-device',
    needsZeros: true,
    ...(delta && { read: (into: Uint8Array, offset: number) => readFully(handle, into, offset).catch((err: unknown) => failedRead(path, err)) }),
    write: (data, offset) => writer.write(data, offset).catch((err: unknown) => failed(path, err)),
    commit: () => syncAndClose(path, writer, handle),
    async abort() {
      await writer.settle().catch(() => undefined);
      await handle.close().catch(() => undefined);
    },
  };
}

/**
 * A write to the destination failed (no space left, a quota, an I/O error): says so naming
 * the destination the user gave, not the temporary name it is written under.
 */
function failed(path: string, err: unknown): never {
  if (err instanceof RestoreTargetError) throw err;
  throw new RestoreTargetError(`Cannot write ${path}: ${describeSystemError(err)}`, { cause: err });
}

/**
 * Refuses a device that is mounted, or that has a partition, a device-mapper or loop device
 * on it (or a loop device over the same bytes of the same file) that is mounted. The
 * exclusive open below does not cover these: the kernel lets O_EXCL open a loop device while
 * another loop device mapped over part of it is mounted, and writing under a mounted
 * filesystem corrupts it.
 */
async function refuseDeviceInUse(path: string, device: DeviceNumber): Promise<void> {
  const mounts = await findMounts(device).catch((err: unknown) => {
    throw new RestoreTargetError(`Cannot check whether ${path} is in use: ${(err as Error).message}`, { cause: err });
  });
  if (mounts.length === 0) return;
  const what = mounts.map((mount) => `${describeBlockDevice(mount)} is mounted at ${mount.mountPoint}`).join('; ');
  throw new RestoreTargetError(`${path} is in use: ${what}; unmount ${mounts.length === 1 ? 'it' : 'them'} before restoring onto ${path}`);
}

/** A second handle on the destination with O_DIRECT, or undefined where the filesystem has no direct I/O (tmpfs). */
async function openDirect(path: string, access: number): Promise<FileHandle | undefined> {
  try {
    return await open(path, access | constants.O_DIRECT);
  } catch {
    return undefined;
  }
}

/**
 * Writes aligned data from aligned memory (restored chunks in their slots) with direct I/O,
 * anything else through the page cache. Direct writes skip copying into the page cache and
 * the memory it needs: writing a restored 4 GiB image that way took a tenth of the kernel
 * time here, and the final fsync has nothing left to wait for. If the filesystem refuses a
 * direct write after all, that write and every later one go through the page cache.
 */
export class Writer {
  readonly #writeback: EarlyWriteback;

  constructor(
    private readonly buffered: FileHandle,
    private direct: FileHandle | undefined,
  ) {
    this.#writeback = new EarlyWriteback(buffered);
  }

  async write(data: Uint8Array, offset: number): Promise<void> {
    if (this.direct && suitsDirectIo(data, offset)) {
      try {
        return await writeFully(this.direct, data, offset);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
        await this.#closeDirect();
      }
    }
    await this.#writeback.written(writeFully(this.buffered, data, offset), data.length);
  }

  /** Waits for background flushes and closes the direct handle; the caller then syncs the buffered one. */
  async settle(): Promise<void> {
    await this.#closeDirect();
    await this.#writeback.settle();
  }

  async #closeDirect(): Promise<void> {
    const direct = this.direct;
    this.direct = undefined;
    await direct?.close().catch(() => undefined);
  }
}

/** Bytes written between two background flushes. */
const WRITEBACK_STEP = 256 * 1024 * 1024;

/**
 * Starts flushing written data while the restore goes on. The kernel would otherwise hold
 * everything in the page cache until the final fsync (its background writeback starts only
 * at 10% of memory dirty), and that fsync would then wait for gigabytes with nothing else
 * to do. One fdatasync at a time, in the background; its error surfaces at commit.
 */
class EarlyWriteback {
  #sinceFlush = 0;
  #flushing: Promise<void> | undefined;
  #failure: unknown;

  constructor(private readonly handle: FileHandle) {}

  async written(write: Promise<void>, length: number): Promise<void> {
    await write;
    this.#sinceFlush += length;
    if (this.#sinceFlush < WRITEBACK_STEP || this.#flushing) return;
    this.#sinceFlush = 0;
    this.#flushing = this.handle.datasync().then(
      () => {
        this.#flushing = undefined;
      },
      (err: unknown) => {
        this.#failure ??= err;
        this.#flushing = undefined;
      },
    );
  }

  /** Waits for a flush in flight; throws the first one's error. */
  async settle(): Promise<void> {
    await this.#flushing;
    if (this.#failure !== undefined) throw this.#failure;
  }
}

function failedRead(path: string, err: unknown): never {
  throw new RestoreTargetError(`Cannot read ${path} to compare it with the snapshot: ${describeSystemError(err)}`, { cause: err });
}

async function readFully(handle: FileHandle, into: Uint8Array, offset: number): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await handle.read(into, done, into.length - done, offset + done);
    if (bytesRead === 0) throw new Error(`unexpected end at offset ${offset + done}`);
    done += bytesRead;
  }
}

async function writeFully(handle: FileHandle, data: Uint8Array, offset: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, offset + done);
    if (bytesWritten === 0) throw new Error(`short write at offset ${offset + done}`);
    done += bytesWritten;
  }
}
