import { inject, injectable } from '../vendor.js';
import { Logger } from '../services.js';
import { Repositories } from '../repository/repositories.js';
import type { BlobIndex, DamagedObject, Repository } from '../repository/repository.js';
import { RepositoryLocks } from '../repository/lock.js';
import type { ChunkRecord } from '../repository/format.js';
import { requireVolumeManifest, type SnapshotManifest } from '../repository/snapshot.js';
import { loadChunkRecords, missingBlobs } from '../pipeline/chunk-maps.js';
import type { WorkerPool } from '../pipeline/worker-pool.js';
import type { LoadedJob } from '../job/job-loader.js';
import { PipelineWorkers } from './pipeline-workers.js';

/**
 * One snapshot held open for random access: the repository, a shared lock on it, the index,
 * the chunk records and a worker pool to open blobs, all kept until `close()`.
 */
export interface OpenedSnapshot {
  readonly id: string;
  readonly manifest: SnapshotManifest;
  readonly repository: Repository;
  readonly index: BlobIndex;
  readonly pool: WorkerPool;
  /** One record per chunk, in image order. */
  readonly records: readonly ChunkRecord[];
  /** Releases the lock, the worker threads and the target. */
  close(): Promise<void>;
}

/**
 * Opens a snapshot for as long as a caller serves it (`cairn serve`, mount, boot, export).
 * The shared lock it holds, refreshed while it is open, is what stops a prune from sweeping
 * packs the snapshot reads (docs/FORMAT.md, Prune); nothing else in the repository is written.
 */
@injectable()
export class OpenSnapshotOperation {
  constructor(
    @inject(Repositories) private readonly repositories: Repositories,
    @inject(PipelineWorkers) private readonly workers: PipelineWorkers,
    @inject(RepositoryLocks) private readonly locks: RepositoryLocks,
    @inject(Logger) private readonly logger: Logger,
  ) {}

  /** `ref` is `latest`, an id or an id prefix; `operation` names the lock (`serve`). */
  open(job: LoadedJob, ref: string, operation = 'serve'): Promise<OpenedSnapshot> {
    // The repository, pool and lock live in scopes that end when their callback returns: the
    // callback hands the opened snapshot out, then waits until it is closed.
    return new Promise<OpenedSnapshot>((resolveOpened, rejectOpened) => {
      let closed: () => void = () => undefined;
      const whenClosed = new Promise<void>((resolve) => (closed = resolve));
      const lifetime = this.workers.withPool((pool) =>
        this.repositories.withRepository(job, async (repository) => {
          const { id, manifest } = await this.#resolve(repository, ref);
          await this.locks.withLock(repository, operation, 'shared', async () => {
            const { index, records } = await this.#load(pool, repository, job, id, manifest);
            let closing: Promise<void> | undefined;
            const close = () => {
              closed();
              return (closing ??= lifetime);
            };
            resolveOpened({ id, manifest, repository, index, pool, records, close });
            await whenClosed;
          });
        }),
      );
      lifetime.catch(rejectOpened);
    });
  }

  async #resolve(repository: Repository, ref: string): Promise<{ id: string; manifest: SnapshotManifest }> {
    const damaged: DamagedObject[] = [];
    const found = await repository.resolveSnapshot(ref, damaged);
    for (const object of damaged) this.logger.warn(`${object.message}; it is left out (opening snapshot ${found.id.slice(0, 12)}, which does not need it)`);
    return { id: found.id, manifest: requireVolumeManifest(found.id, found.manifest, 'serving it as a disk') };
  }

  async #load(pool: WorkerPool, repository: Repository, job: LoadedJob, id: string, manifest: SnapshotManifest) {
    const index = await this.workers.prepare(pool, repository, job, 'read');
    for (const damaged of index.unreadable) this.logger.warn(`${damaged.message}; reading from the other index files (\`cairn repair index\` rebuilds the index)`);
    const records = await loadChunkRecords(repository, index, pool, manifest);
    const missing = missingBlobs(records, index);
    if (missing.length > 0) {
      // Served all the same: the rest of the disk may be all the user needs; reads of these chunks fail.
      this.logger.warn(`${missing.length} blob(s) of snapshot ${id.slice(0, 12)} are in no index: reads of the chunks they hold fail (\`cairn check\` reports them, \`cairn repair\` may help)`);
    }
    return { index, records };
  }
}
