import { inject, injectable } from '../vendor.js';
import { Logger } from '../services.js';
import { Repositories } from '../repository/repositories.js';
import type { DamagedObject, SnapshotSummary } from '../repository/repository.js';
import type { LoadedJob } from '../job/job-loader.js';

/** `cairn snapshots`: every snapshot in the job's repository, oldest first. */
@injectable()
export class SnapshotsOperation {
  constructor(
    @inject(Repositories) private readonly repositories: Repositories,
    @inject(Logger) private readonly logger: Logger,
  ) {}

  /** The readable snapshots; a damaged one is named in a warning and added to `damaged`. */
  list(job: LoadedJob, damaged: DamagedObject[] = []): Promise<SnapshotSummary[]> {
    return this.repositories.withRepository(job, async (repository) => {
      const found: DamagedObject[] = [];
      const snapshots = await repository.listSnapshots(found);
      for (const object of found) this.logger.warn(`${object.message}; it is not listed (\`cairn check\` reports it)`);
      damaged.push(...found);
      return snapshots;
    });
  }
}

/** `cairn show`: one snapshot, by `latest`, id or id prefix. */
@injectable()
export class ShowOperation {
  constructor(
    @inject(Repositories) private readonly repositories: Repositories,
    @inject(Logger) private readonly logger: Logger,
  ) {}

  run(job: LoadedJob, ref: string): Promise<SnapshotSummary> {
    return this.repositories.withRepository(job, async (repository) => {
      const damaged: DamagedObject[] = [];
      const summary = await repository.resolveSnapshot(ref, damaged);
      for (const object of damaged) this.logger.warn(`${object.message}; it is left out`);
      return summary;
    });
  }
}
