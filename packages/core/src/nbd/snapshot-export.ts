/*
 * TEMPORARY STAND-IN, written by the NBD-server branch only so that `cairn serve` runs in its
 * tests: the real snapshot-export.ts (random-access reads with an LRU cache and read-ahead,
 * the allocation map from the chunk maps, an overlay) comes from the snapshot-reader branch
 * and replaces this file whole. This one restores the snapshot to a temporary sparse file
 * and serves that; zero blocks are reported as holes; it takes no overlay.
 */
import { open, mkdtemp, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Core } from '../create-core.js';
import { UsageError } from '../errors.js';
import type { LoadedJob } from '../job/job-loader.js';
import { RestoreOperation } from '../operations/restore.js';
import { ShowOperation } from '../operations/snapshots.js';
import type { ExportExtent, ExportSource } from './export-source.js';

export interface SnapshotExports {
  exports: ExportSource[];
  /** The snapshot's full id. */
  snapshot: string;
  close(): Promise<void>;
}

const BLOCK = 64 * 1024;

export async function openSnapshotExports(core: Core, job: LoadedJob, snapshotRef: string, options: { overlay?: string }): Promise<SnapshotExports> {
  if (options.overlay) throw new UsageError('--overlay needs the snapshot reader (this build serves a temporary restored copy, read-only)');
  const { id, manifest } = await core.get(ShowOperation).run(job, snapshotRef);
  const dir = await mkdtemp(join(tmpdir(), 'cairn-serve-'));
  const image = join(dir, 'image');
  await core.get(RestoreOperation).run(job, id, image, { force: true });
  const file = await open(image, 'r');
  const label = `${manifest.job} ${id.slice(0, 12)}`;
  const exports = [new FileRangeExport(file, '', `${label}: the whole disk`, 0, manifest.size)];
  for (const p of manifest.layout.partitions) exports.push(new FileRangeExport(file, `p${p.index}`, `${label}: partition ${p.index}${p.filesystem ? ` (${p.filesystem})` : ''}`, p.offset, p.size));
  return {
    exports,
    snapshot: id,
    async close() {
      await file.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

class FileRangeExport implements ExportSource {
  readonly writable = false;
  constructor(
    private readonly file: FileHandle,
    readonly name: string,
    readonly description: string,
    private readonly start: number,
    readonly size: number,
  ) {}

  async read(offset: number, length: number): Promise<Buffer> {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await this.file.read(buffer, 0, length, this.start + offset);
    if (bytesRead !== length) throw new Error(`short read at ${offset}`);
    return buffer;
  }

  async blockStatus(offset: number, length: number): Promise<ExportExtent[]> {
    const extents: ExportExtent[] = [];
    const end = offset + length;
    for (let at = offset; at < end; ) {
      const stop = Math.min(end, (Math.floor(at / BLOCK) + 1) * BLOCK);
      const zero = (await this.read(at, stop - at)).every((b) => b === 0);
      const last = extents.at(-1);
      if (last && last.zero === zero) last.length += stop - at;
      else extents.push({ offset: at, length: stop - at, hole: zero, zero });
      at = stop;
    }
    return extents;
  }

  async prefetch(): Promise<void> {}
  async close(): Promise<void> {}
}
