import { open, stat, type FileHandle } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import path from 'node:path';
import {
  injectable,
  SourceError,
  SourceReadError,
  describeSystemError,
  type Extent,
  type ImagingMode,
  type OpenedSource,
  type SourceFactory,
  type SourceOpenContext,
  type SourceSettings,
  type VolumeLayout,
  type LvmLayout,
  type DeviceMount,
  type RelatedBlockDevice,
  findMounts,
  findMountsOfFile,
  readBlockDeviceGeometry,
  splitDeviceNumber,
} from '@cairn/core';
import { planVolume, type PartitionModes, type VolumeReader } from './extents.js';
import { USED_BLOCK_MAPPERS } from './filesystems/index.js';
import { PROBE_LENGTH, probeVolume } from './probe.js';

/** The job file's `source` object, as `schema/volume.schema.json` describes it. */
export interface VolumeSourceSettings extends SourceSettings {
  type: 'volume';
  path: string;
  mode?: ImagingMode;
  /** Per-partition mode, keyed by partition number. */
  partitions?: PartitionModes;
}

const INCONSISTENT_IMAGE_ADVICE = 'the image may be inconsistent (unmount it, mount it read-only, or freeze it with fsfreeze)';

function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function accessError(sourcePath: string, err: unknown): SourceError {
  switch (errorCode(err)) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new SourceError(`Source ${sourcePath} does not exist`, { cause: err });
    case 'EACCES':
    case 'EPERM':
      return new SourceError(
        `Source ${sourcePath} cannot be read: permission denied (block devices usually need root or membership of the disk group)`,
        { cause: err },
      );
    default:
      return new SourceError(`Source ${sourcePath} cannot be opened: ${(err as Error).message}`, { cause: err });
  }
}

function describeFileType(info: BigIntStats): string {
  if (info.isDirectory()) return 'a directory';
  if (info.isCharacterDevice()) return 'a character device';
  if (info.isFIFO()) return 'a FIFO';
  if (info.isSocket()) return 'a socket';
  return 'not a regular file';
}

function readSettings(settings: SourceSettings): { sourcePath: string; mode: ImagingMode; partitions: PartitionModes } {
  const { path: sourcePath, mode = 'used', partitions = {} } = settings as VolumeSourceSettings;
  if (typeof sourcePath !== 'string' || sourcePath === '') {
    throw new SourceError('A volume source needs a "path": an image file or a block device');
  }
  if (mode !== 'exact' && mode !== 'used') {
    throw new SourceError(`Volume source ${sourcePath}: "mode" must be "exact" or "used", not ${JSON.stringify(mode)}`);
  }
  return { sourcePath, mode, partitions };
}

@injectable()
export class VolumeSourceFactory implements SourceFactory {
  async open(settings: SourceSettings, context: SourceOpenContext): Promise<OpenedSource> {
    const { sourcePath, mode, partitions } = readSettings(settings);
    const resolvedPath = path.resolve(context.baseDir, sourcePath);

    // Checked before opening: opening a FIFO for reading blocks until a writer appears.
    const info = await stat(resolvedPath, { bigint: true }).catch((err: unknown) => {
      throw accessError(resolvedPath, err);
    });
    if (!info.isFile() && !info.isBlockDevice()) {
      throw new SourceError(`Source ${resolvedPath} is ${describeFileType(info)}, not an image file or a block device`);
    }

    const handle = await open(resolvedPath, 'r').catch((err: unknown) => {
      throw accessError(resolvedPath, err);
    });
    try {
      return await VolumeSource.create(resolvedPath, handle, mode, partitions);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }
}

export class VolumeSource implements OpenedSource, VolumeReader {
  #disposed = false;

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly size: number,
    readonly layout: VolumeLayout,
    readonly extents: readonly Extent[],
    readonly warnings: readonly string[],
  ) {}

  /** Measures, probes and checks the opened volume; the caller closes `handle` if this throws. */
  static async create(sourcePath: string, handle: FileHandle, requestedMode: ImagingMode, partitionModes: PartitionModes = {}): Promise<VolumeSource> {
    // The opened handle is what gets read, so its type and size are what count.
    const info = await handle.stat({ bigint: true });
    const isBlockDevice = info.isBlockDevice();
    let size: number;
    let deviceSectorSize: number | undefined;
    if (isBlockDevice) {
      const geometry = await readBlockDeviceGeometry(splitDeviceNumber(info.rdev));
      if (!geometry) throw new SourceError(`Source ${sourcePath}: the size of the block device cannot be read from /sys/dev/block`);
      size = geometry.size;
      deviceSectorSize = geometry.logicalSectorSize;
    } else {
      size = Number(info.size);
    }
    // An empty file is usually a mistake (a path to the wrong file, a device without its medium).
    if (size === 0) throw new SourceError(`Source ${sourcePath} is empty (0 bytes): there is nothing to back up`);

    const head = new Uint8Array(Math.min(size, PROBE_LENGTH));
    await readFully(sourcePath, handle, head, 0, head.length);
    const probe = probeVolume(head, deviceSectorSize);

    const reader: VolumeReader = { size, read: (into, offset, length) => readFully(sourcePath, handle, into, offset, length) };
    const plan = await planVolume(reader, probe, requestedMode, partitionModes, USED_BLOCK_MAPPERS);

    const warnings = await mountWarnings(sourcePath, info);
    if (plan.note !== undefined) warnings.push(`${sourcePath}: ${plan.note}`);
    warnings.push(...exactLvWarnings(sourcePath, plan.lvm));
    for (const partition of plan.partitions) {
      if (partition.note !== undefined) warnings.push(`${sourcePath} partition ${partition.index}: ${partition.note}`);
      warnings.push(...exactLvWarnings(`${sourcePath} partition ${partition.index}`, partition.lvm));
    }

    const layout: VolumeLayout = {
      size,
      sectorSize: probe.sectorSize,
      kind: isBlockDevice ? 'block-device' : 'file',
      partitionTable: plan.partitionTable,
      ...(plan.filesystem !== undefined && { filesystem: plan.filesystem }),
      mode: plan.mode,
      partitions: plan.partitions,
      ...(plan.note !== undefined && { note: plan.note }),
      ...(plan.lvm !== undefined && { lvm: plan.lvm }),
    };
    return new VolumeSource(sourcePath, handle, size, layout, plan.extents, warnings);
  }

  async read(into: Uint8Array, offset: number, length: number): Promise<void> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new SourceError(`Reading ${this.path}: invalid range (offset ${offset}, length ${length})`);
    }
    if (offset + length > this.size) {
      throw new SourceError(`Reading ${this.path}: ${length} bytes at offset ${offset} go past the end of the volume (${this.size} bytes)`);
    }
    if (length > into.length) {
      throw new SourceError(`Reading ${this.path}: a ${into.length}-byte buffer cannot hold ${length} bytes`);
    }
    if (this.#disposed) throw new SourceError(`Reading ${this.path}: the source is closed`);
    await readFully(this.path, this.handle, into, offset, length);
  }

  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    await this.handle.close();
  }
}

/** LVs of an LVM2 physical volume imaged exactly, each with its reason, as partitions are reported. */
function exactLvWarnings(where: string, lvm: LvmLayout | undefined): string[] {
  return (lvm?.logicalVolumes ?? []).filter((lv) => lv.mode === 'exact' && lv.note !== undefined).map((lv) => `${where} LV ${lvm!.vg.name}/${lv.name}: ${lv.note}`);
}

/**
 * Errors of a read that say the medium could not deliver these bytes, as Linux reports a
 * failed block request (EIO, or from direct reads ENODATA for a medium error, EREMOTEIO,
 * EILSEQ for bad protection information, EBADMSG). Anything else (a device that went away)
 * is not about the range.
 */
const UNREADABLE_CODES = new Set(['EIO', 'ENODATA', 'EREMOTEIO', 'EILSEQ', 'EBADMSG']);

/**
 * Positional reads until `length` bytes are in: block devices return short reads. Positional
 * reads share no file offset, so concurrent calls are safe. A failed read names the bytes
 * still missing: after a short read the kernel reports the error at the first bad page.
 */
async function readFully(sourcePath: string, handle: FileHandle, into: Uint8Array, offset: number, length: number): Promise<void> {
  let done = 0;
  while (done < length) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await handle.read(into, done, length - done, offset + done));
    } catch (err) {
      const reason = describeSystemError(err);
      if (UNREADABLE_CODES.has(errorCode(err) ?? '')) throw new SourceReadError(sourcePath, offset + done, length - done, reason, { cause: err });
      throw new SourceError(`Cannot read ${sourcePath} at offset ${offset + done} (length ${length - done}): ${reason}`, { cause: err });
    }
    if (bytesRead === 0) {
      throw new SourceError(
        `Cannot read ${sourcePath} at offset ${offset + done} (length ${length - done}): the volume ends there, short of the size it had when the backup started (did it shrink while it was read?)`,
      );
    }
    done += bytesRead;
  }
}

function readWriteMountWarning(mount: DeviceMount, prefix = ''): string {
  return `${prefix}${mount.devicePath} is mounted read-write at ${mount.mountPoint}: ${INCONSISTENT_IMAGE_ADVICE}`;
}

/** The loop device over the image file that `mount` is reached through. */
function attachedLoop(mount: DeviceMount): string {
  let device: RelatedBlockDevice = mount;
  while (device.via && device.via.kind !== 'file-loop') device = device.via.parent;
  return device.devicePath;
}

/**
 * A volume that is being written while it is read makes an inconsistent image. Checks the
 * device itself (and its partitions and mapped devices) or, for an image file, the loop
 * devices it backs.
 */
async function mountWarnings(sourcePath: string, info: BigIntStats): Promise<string[]> {
  try {
    if (info.isBlockDevice()) {
      const mounts = await findMounts(splitDeviceNumber(info.rdev));
      return mounts.filter((mount) => mount.readWrite).map((mount) => readWriteMountWarning(mount));
    }
    // A mount reached through a loop device over the file names that loop device first.
    return (await findMountsOfFile(info))
      .filter((mount) => mount.readWrite)
      .map((mount) => readWriteMountWarning(mount, `${sourcePath} is attached to ${attachedLoop(mount)}; `));
  } catch (err) {
    return [`Could not check whether ${sourcePath} is mounted: ${(err as Error).message}`];
  }
}
