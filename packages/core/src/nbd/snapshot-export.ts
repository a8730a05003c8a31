import { resolve } from 'node:path';
import type { Core } from '../create-core.js';
import { Environment, Logger } from '../services.js';
import type { LoadedJob } from '../job/job-loader.js';
import type { SnapshotManifest } from '../repository/snapshot.js';
import type { PartitionLayout } from '../source.js';
import { OpenSnapshotOperation, type OpenedSnapshot } from '../operations/open-snapshot.js';
import type { ExportSource } from './export-source.js';
import { ExportWindow } from './export-window.js';
import { Overlay } from './overlay.js';
import { SnapshotImage } from './snapshot-image.js';

export interface SnapshotExportOptions {
  /** Copy-on-write file for writes (relative to the working folder); without it the exports are read-only. */
  overlay?: string;
  /** Memory budget of decoded chunks, shared by all exports; default 256 MiB. */
  cacheBytes?: number;
}

export interface SnapshotExports {
  /** The whole disk as '' first, then each partition as `p<index>`. */
  exports: ExportSource[];
  /** The snapshot's full id. */
  snapshot: string;
  /**
   * Flushes the overlay and releases everything: files, cache, worker threads, the repository
   * lock and the target. The exports' own close() only flushes, so that an export can be
   * closed per client and served again.
   */
  close(): Promise<void>;
}

/**
 * Opens a job's snapshot as NBD exports: the whole disk ('') and a window per partition of its
 * layout (`p1`, `p2`, … by partition index), all reading one snapshot image and, with an
 * overlay, writing to one overlay of the disk. The repository is only read; a shared lock
 * (operation `serve`) is held until close().
 */
export async function openSnapshotExports(core: Core, job: LoadedJob, snapshotRef: string, options: SnapshotExportOptions = {}): Promise<SnapshotExports> {
  const opened = await core.get(OpenSnapshotOperation).open(job, snapshotRef);
  let image: SnapshotImage | undefined;
  try {
    const { id, manifest, repository, index, pool, records } = opened;
    const prefix = `${job.info.name} ${id.slice(0, 12)}`;
    image = new SnapshotImage({ repository, index, pool, records, manifest, snapshot: id, name: '', description: `${prefix}: ${describeDisk(manifest)}`, cacheBytes: options.cacheBytes });
    const disk = options.overlay ? await Overlay.open(resolve(core.get<Environment>(Environment).cwd, options.overlay), image, id) : image;
    const partitions = partitionExports(disk, manifest, prefix, core.get<Logger>(Logger));
    return { exports: [disk, ...partitions], snapshot: id, close: once(() => release(disk, image!, opened)) };
  } catch (err) {
    image?.release();
    await opened.close();
    throw err;
  }
}

async function release(disk: ExportSource, image: SnapshotImage, opened: OpenedSnapshot): Promise<void> {
  try {
    if (disk instanceof Overlay) await disk.release();
  } finally {
    image.release();
    await opened.close();
  }
}

function partitionExports(disk: ExportSource, manifest: SnapshotManifest, prefix: string, logger: Logger): ExportWindow[] {
  const windows: ExportWindow[] = [];
  for (const partition of manifest.layout.partitions) {
    if (partition.size <= 0 || partition.offset + partition.size > disk.size) {
      logger.warn(`${prefix}: partition ${partition.index} (${partition.size} bytes at ${partition.offset}) does not lie inside the disk of ${disk.size} bytes; it is not exported`);
      continue;
    }
    windows.push(new ExportWindow(disk, `p${partition.index}`, `${prefix}: ${describePartition(partition)}`, partition.offset, partition.size));
  }
  return windows;
}

/** `whole disk (gpt, 3 partitions)`, `ext4 filesystem`, `image`. */
function describeDisk(manifest: SnapshotManifest): string {
  const { layout } = manifest;
  if (layout.partitionTable.type !== 'none') return `whole disk (${layout.partitionTable.type}, ${layout.partitions.length} partition${layout.partitions.length === 1 ? '' : 's'})`;
  return layout.filesystem ? `${layout.filesystem} filesystem` : 'image';
}

/** `partition 2 (ext4, "root")`. */
function describePartition(partition: PartitionLayout): string {
  const details = [partition.filesystem ?? 'unknown filesystem', ...(partition.name ? [JSON.stringify(partition.name)] : [])];
  return `partition ${partition.index} (${details.join(', ')})`;
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}
