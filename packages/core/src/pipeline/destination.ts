import { constants, type Stats } from 'node:fs';
import { open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';
import { RestoreTargetError } from '../errors.js';
import { blockDeviceInfo, mountsOf } from '../system/block-device.js';

/**
 * Where a restore writes. An image file is written under a temporary name next to the
 * destination and renamed over it only after the image's sha256 matched, so a failed
 * restore never leaves a file that looks complete (and never destroys the old one).
 * A block device is written in place.
 */
export interface Destination {
  readonly path: string;
  readonly kind: 'file' | 'block-device';
  /** Block devices keep their old content where nothing is written: zero chunks must be written. */
  readonly needsZeros: boolean;
  write(data: Uint8Array, offset: number): Promise<void>;
  /** Makes the result durable and visible. */
  commit(): Promise<void>;
  /** Removes a partial file; leaves a device as it is. */
  abort(): Promise<void>;
}

export async function openDestination(path: string, imageSize: number, force: boolean): Promise<Destination> {
  const absolute = resolve(path);
  let stats: Stats | undefined;
  try {
    stats = await stat(absolute);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new RestoreTargetError(`Cannot use ${absolute}: ${(err as Error).message}`, { cause: err });
  }
  if (stats?.isBlockDevice()) return openDevice(absolute, stats, imageSize, force);
  if (stats && !stats.isFile()) throw new RestoreTargetError(`${absolute} is neither a regular file nor a block device`);
  if (stats && !force) throw new RestoreTargetError(`${absolute} already exists; add --force to overwrite it`);
  return openImageFile(absolute, imageSize);
}

async function openImageFile(path: string, imageSize: number): Promise<Destination> {
  const temp = join(dirname(path), `.${basename(path)}.cairn-restore-${randomBytes(6).toString('hex')}`);
  let handle: FileHandle;
  try {
    handle = await open(temp, 'wx', 0o600);
  } catch (err) {
    throw new RestoreTargetError(`Cannot create ${path}: ${(err as Error).message}`, { cause: err });
  }
  // A fresh file of the right size is all holes: zero and unused chunks need no write.
  await handle.truncate(imageSize);
  return {
    path,
    kind: 'file',
    needsZeros: false,
    write: (data, offset) => writeFully(handle, data, offset),
    async commit() {
      await handle.sync();
      await handle.close();
      await rename(temp, path);
      const dir = await open(dirname(path), 'r');
      await dir.sync().finally(() => dir.close());
    },
    async abort() {
      await handle.close().catch(() => undefined);
      await unlink(temp).catch(() => undefined);
    },
  };
}

async function openDevice(path: string, stats: Stats, imageSize: number, force: boolean): Promise<Destination> {
  const device = await blockDeviceInfo(path, stats);
  const mounts = await mountsOf(device.major, device.minor);
  if (mounts.length > 0) {
    throw new RestoreTargetError(`${path} is mounted at ${mounts.map((m) => m.mountPoint).join(', ')}; unmount it before restoring onto it`);
  }
  if (device.size < imageSize) {
    throw new RestoreTargetError(`${path} holds ${device.size} bytes, smaller than the image's ${imageSize} bytes`);
  }
  if (!force) throw new RestoreTargetError(`Restoring onto ${path} overwrites the device; add --force to do it`);
  let handle: FileHandle;
  try {
    // O_EXCL on a block device fails while anything (a mount, another process) holds it exclusively.
    handle = await open(path, constants.O_RDWR | constants.O_EXCL);
  } catch (err) {
    throw new RestoreTargetError(`Cannot open ${path} for writing: ${(err as Error).message}`, { cause: err });
  }
  return {
    path,
    kind: 'block-device',
    needsZeros: true,
    write: (data, offset) => writeFully(handle, data, offset),
    async commit() {
      await handle.sync();
      await handle.close();
    },
    async abort() {
      await handle.close().catch(() => undefined);
    },
  };
}

async function writeFully(handle: FileHandle, data: Uint8Array, offset: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, offset + done);
    if (bytesWritten === 0) throw new Error(`short write at offset ${offset + done}`);
    done += bytesWritten;
  }
}
