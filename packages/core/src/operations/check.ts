import { inject, injectable } from '../vendor.js';
import { ProgressFactory } from '../services.js';
import { Repositories } from '../repository/repositories.js';
import { RepositoryLocks } from '../repository/lock.js';
import { runCheck, type CheckReport, type ReadDataSubset } from '../pipeline/check.js';
import type { LoadedJob } from '../job/job-loader.js';
import { PipelineWorkers } from './pipeline-workers.js';

export interface CheckOptions {
  /** Read and verify every pack, or with `subset` a part of them. */
  readData: boolean;
  subset?: ReadDataSubset;
}

/** `cairn check`: verifies the repository's structure, or every byte with `readData`. */
@injectable()
export class CheckOperation {
  constructor(
    @inject(Repositories) private readonly repositories: Repositories,
    @inject(PipelineWorkers) private readonly workers: PipelineWorkers,
    @inject(RepositoryLocks) private readonly locks: RepositoryLocks,
    @inject(ProgressFactory) private readonly progress: ProgressFactory,
  ) {}

  run(job: LoadedJob, options: CheckOptions): Promise<CheckReport> {
    return this.workers.withPool((pool) =>
      this.repositories.withRepository(job, (repository) =>
        this.locks.withLock(repository, 'check', 'shared', () =>
          runCheck({
            repository,
            pool,
            // Only once the snapshots are read: see CheckInput.loadIndex.
            loadIndex: () => this.workers.prepare(pool, repository, job, 'read'),
            readData: options.readData || options.subset !== undefined,
            subset: options.subset,
            progress: this.progress.create(),
          }),
        ),
      ),
    );
  }
}
