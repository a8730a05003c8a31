import { open, stat } from 'node:fs/promises';
import { RestoreTargetError } from '../errors.js';
import { readBlockDeviceGeometry, splitDeviceNumber } from '../system/block-device.js';
import { loadPosix } from '../files/posix.js';
import type { Destination } from './destination.js';

/*
 * A restore that shrinks the disk goes through a staging file (operations/restore.ts): what it
 * needs to know of the target before, and the copy of the shrunk image to it after.
 */

/** Bytes copied per read and write. */
const PIECE = 4 * 1024 * 1024;

/**
 * Copies the first `size` bytes of the sparse file `from` (a staging image) to `destination`
 * and commits it: only the data ranges (SEEK_DATA/SEEK_HOLE) are read; the holes stay holes in
 * an image file and are written as zeros on a block device, which keeps its old bytes
 * otherwise. Returns the bytes written.
 */
export async function copySparseImage(from: string, size: number, destination: Destination): Promise<number> {
  const posix = await loadPosix();
  const handle = await open(from, 'r');
  let written = 0;
  try {
    let at = 0;
    const buffer = Buffer.alloc(PIECE);
    const zeros = Buffer.alloc(PIECE);
    const writeZerosUpTo = async (end: number) => {
      for (; destination.needsZeros && at < end; at += Math.min(PIECE, end - at)) {
        await destination.write(zeros.subarray(0, Math.min(PIECE, end - at)), at);
        written += Math.min(PIECE, end - at);
      }
      at = end;
    };
    for (const range of posix.dataRanges(handle.fd, size)) {
      await writeZerosUpTo(range.offset);
      for (const end = range.offset + range.length; at < end; ) {
        const length = Math.min(PIECE, end - at);
        const { bytesRead } = await handle.read(buffer, 0, length, at);
        if (bytesRead !== length) throw new Error(`${from} ended at byte ${at + bytesRead}, before ${size}`);
        // A fresh copy of the piece: the destination may keep it until its write completes.
        await destination.write(Buffer.from(buffer.subarray(0, length)), at);
        written += length;
        at += length;
      }
    }
    await writeZerosUpTo(size);
  } catch (err) {
    await destination.abort();
    throw err;
  } finally {
    await handle.close();
  }
  await destination.commit();
  return written;
}

/** The size of a block device, or undefined when `path` is not one (a file, or nothing yet). */
export async function blockDeviceSize(path: string): Promise<number | undefined> {
  const stats = await stat(path).catch(() => undefined);
  if (!stats?.isBlockDevice()) return undefined;
  const geometry = await readBlockDeviceGeometry(splitDeviceNumber(stats.rdev));
  if (!geometry) throw new RestoreTargetError(`Cannot read the size of ${path} from /sys/dev/block`);
  return geometry.size;
}

/** Said before a shrink stages the image, not after: openDestination says the same, but later. */
export async function refuseExistingWithoutForce(path: string, force: boolean): Promise<void> {
  const stats = await stat(path).catch(() => undefined);
  if (!stats || force) return;
  if (stats.isBlockDevice()) throw new RestoreTargetError(`Restoring onto ${path} overwrites the device; add --force to do it`);
  throw new RestoreTargetError(`${path} already exists; add --force to overwrite it`);
}
