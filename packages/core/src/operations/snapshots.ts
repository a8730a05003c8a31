import { inject, injectable } from '../vendor.js';
import { Repositories } from '../repository/repositories.js';
import type { SnapshotSummary } from '../repository/repository.js';
import type { LoadedJob } from '../job/job-loader.js';

/** `cairn snapshots`: every snapshot in the job's repository, oldest first. */
@injectable()
export class SnapshotsOperation {
  constructor(@inject(Repositories) private readonly repositories: Repositories) {}

  list(job: LoadedJob): Promise<SnapshotSummary[]> {
    return this.repositories.withRepository(job, (repository) => repository.listSnapshots());
  }
}

/** `cairn show`: one snapshot, by `latest`, id or id prefix. */
@injectable()
export class ShowOperation {
  constructor(@inject(Repositories) private readonly repositories: Repositories) {}

  run(job: LoadedJob, ref: string): Promise<SnapshotSummary> {
    return this.repositories.withRepository(job, (repository) => repository.resolveSnapshot(ref));
  }
}
