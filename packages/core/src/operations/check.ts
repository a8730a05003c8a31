import { inject, injectable } from '../vendor.js';
import { ProgressFactory } from '../services.js';
import { Repositories } from '../repository/repositories.js';
import { RepositoryLocks } from '../repository/lock.js';
import { runCheck, type CheckReport } from '../pipeline/check.js';
import type { LoadedJob } from '../job/job-loader.js';
import { PipelineWorkers } from './pipeline-workers.js';

/** `cairn check`: verifies the repository's structure, or every byte with `readData`. */
@injectable()
export class CheckOperation {
  constructor(
    @inject(Repositories) private readonly repositories: Repositories,
    @inject(PipelineWorkers) private readonly workers: PipelineWorkers,
    @inject(RepositoryLocks) private readonly locks: RepositoryLocks,
    @inject(ProgressFactory) private readonly progress: ProgressFactory,
  ) {}

  run(job: LoadedJob, options: { readData: boolean }): Promise<CheckReport> {
    return this.workers.withPool((pool) =>
      this.repositories.withRepository(job, (repository) =>
        this.locks.withLock(repository, 'check', false, async () => {
          const index = await this.workers.prepare(pool, repository, job, 'read');
          return runCheck(repository, index, pool, options.readData, this.progress.create());
        }),
      ),
    );
  }
}
