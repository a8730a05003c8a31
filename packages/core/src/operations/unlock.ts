import { inject, injectable } from '../vendor.js';
import { Repositories } from '../repository/repositories.js';
import { RepositoryLocks, modeOf, type ListedLock, type LockMode } from '../repository/lock.js';
import type { LoadedJob } from '../job/job-loader.js';

export interface LockSummary {
  id: string;
  operation: string;
  mode: LockMode;
  hostname: string;
  pid: number;
  started: string;
  refreshed: string;
  /** Why it no longer counts; absent while it holds. */
  stale?: string;
}

export interface UnlockResult {
  removed: LockSummary[];
  /** Locks left in place because they still hold (without --remove-all). */
  remaining: LockSummary[];
}

/** `cairn unlock`: removes stale locks, or every lock with `all`. */
@injectable()
export class UnlockOperation {
  constructor(
    @inject(Repositories) private readonly repositories: Repositories,
    @inject(RepositoryLocks) private readonly locks: RepositoryLocks,
  ) {}

  run(job: LoadedJob, options: { all: boolean }): Promise<UnlockResult> {
    return this.repositories.withRepository(job, async (repository) => {
      const removed = await this.locks.remove(repository, { all: options.all });
      const remaining = await this.locks.list(repository);
      return { removed: removed.map(summarise), remaining: remaining.map(summarise) };
    });
  }
}

function summarise({ id, info, stale }: ListedLock): LockSummary {
  return {
    id,
    operation: info.operation,
    mode: modeOf(info),
    hostname: info.hostname,
    pid: info.pid,
    started: info.started ?? info.time,
    refreshed: info.time,
    ...(stale && { stale }),
  };
}
