import { inject, injectable } from '../vendor.js';
import { Logger, ProgressFactory } from '../services.js';
import type { Repository } from '../repository/repository.js';
import { RepositoryLocks } from '../repository/lock.js';
import type { FileSnapshotManifest } from '../repository/snapshot.js';
import type { WorkerPool } from '../pipeline/worker-pool.js';
import type { LoadedJob } from '../job/job-loader.js';
import { TreeReader } from '../files/tree-reader.js';
import { BlobStream } from '../files/content-reader.js';
import { loadPosix } from '../files/posix.js';
import { FileTreeRestore, type FileRestoreCounts, type FileRestoreOptions, type VerifyReport } from '../files/file-restore.js';
import { PipelineWorkers } from './pipeline-workers.js';

export interface FileRestoreResult extends FileRestoreCounts {
  kind: 'files';
  snapshot: string;
  destination: string;
  /** With `verify`: what was read back, and every difference from the snapshot. */
  verified?: VerifyReport;
}

/** A file snapshot, resolved in an opened repository, to restore below a folder. */
export interface FileRestoreRequest {
  job: LoadedJob;
  pool: WorkerPool;
  repository: Repository;
  id: string;
  manifest: FileSnapshotManifest;
  /** Absolute folder. */
  to: string;
  options: FileRestoreOptions;
}

/**
 * `cairn restore` of a file snapshot (RestoreOperation hands it over once it has resolved the
 * snapshot): holds a shared 'restore' lock while it reads, like an image restore.
 */
@injectable()
export class FileRestoreOperation {
  constructor(
    @inject(PipelineWorkers) private readonly workers: PipelineWorkers,
    @inject(RepositoryLocks) private readonly locks: RepositoryLocks,
    @inject(ProgressFactory) private readonly progress: ProgressFactory,
    @inject(Logger) private readonly logger: Logger,
  ) {}

  restore(request: FileRestoreRequest): Promise<FileRestoreResult> {
    const { job, pool, repository, id, manifest, to, options } = request;
    return this.locks.withLock(repository, 'restore', 'shared', async () => {
      const [index, posix] = await Promise.all([this.workers.prepare(pool, repository, job, 'read'), loadPosix()]);
      for (const damaged of index.unreadable) this.logger.warn(`${damaged.message}; restoring from the other index files (\`cairn repair index\` rebuilds the index)`);
      if (manifest.skipped?.length) this.logger.warn(`snapshot ${id.slice(0, 12)} is incomplete: ${manifest.skippedCount ?? manifest.skipped.length} path(s) could not be backed up (\`cairn show\` lists them)`);
      const restore = new FileTreeRestore({
        // The restore walks the snapshot once: cached trees would hold all of its entries.
        reader: new TreeReader(repository, index, pool, 0),
        blobs: new BlobStream(repository, index, pool),
        pool,
        posix,
        snapshot: id,
        manifest,
        to,
        options,
        progress: this.progress.create(),
        warn: (message) => this.logger.warn(message),
      });
      const { counts, verified } = await restore.run();
      return { kind: 'files' as const, snapshot: id, destination: to, ...counts, ...(verified && { verified }) };
    });
  }
}
