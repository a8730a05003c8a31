import { inject, injectable } from '../vendor.js';
import { ProgressFactory } from '../services.js';
import { Repositories } from '../repository/repositories.js';
import { RepositoryLocks } from '../repository/lock.js';
import { runRepairIndex, runRepairSnapshots, type RepairIndexReport, type RepairSnapshotsReport } from '../pipeline/repair.js';
import type { LoadedJob } from '../job/job-loader.js';
import { PipelineWorkers } from './pipeline-workers.js';

export interface RepairSnapshotsOptions {
  /** Also read every pack: blobs that fail verification count as lost. */
  readData?: boolean;
  /** Report what would be done, change nothing. */
  dryRun?: boolean;
  /** Remove snapshots nothing can be saved of. */
  forget?: boolean;
}

/**
 * `cairn repair index` and `cairn repair snapshots`. Both hold an exclusive lock: they
 * replace index files and snapshots that every other operation reads.
 */
@injectable()
export class RepairOperation {
  constructor(
    @inject(Repositories) private readonly repositories: Repositories,
    @inject(PipelineWorkers) private readonly workers: PipelineWorkers,
    @inject(RepositoryLocks) private readonly locks: RepositoryLocks,
    @inject(ProgressFactory) private readonly progress: ProgressFactory,
  ) {}

  /** Rebuilds the index from the packs' headers. */
  index(job: LoadedJob): Promise<RepairIndexReport> {
    return this.repositories.withRepository(job, (repository) =>
      this.locks.withLock(repository, 'repair index', 'exclusive', () => runRepairIndex(repository, this.progress.create())),
    );
  }

  /** Replaces snapshots that need lost data with ones that record the loss. */
  snapshots(job: LoadedJob, options: RepairSnapshotsOptions = {}): Promise<RepairSnapshotsReport> {
    return this.workers.withPool((pool) =>
      this.repositories.withRepository(job, (repository) =>
        this.locks.withLock(repository, 'repair snapshots', 'exclusive', async () =>
          runRepairSnapshots({
            repository,
            pool,
            index: await this.workers.prepare(pool, repository, job, 'read'),
            progress: this.progress.create(),
            readData: options.readData ?? false,
            dryRun: options.dryRun ?? false,
            forget: options.forget ?? false,
          }),
        ),
      ),
    );
  }
}
