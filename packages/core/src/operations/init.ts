import { inject, injectable } from '../vendor.js';
import { Repositories } from '../repository/repositories.js';
import type { LoadedJob } from '../job/job-loader.js';

/** `cairn init`: creates the repository the job's target points at. */
@injectable()
export class InitOperation {
  constructor(@inject(Repositories) private readonly repositories: Repositories) {}

  run(job: LoadedJob): Promise<{ id: string; location: string }> {
    return this.repositories.init(job);
  }
}
