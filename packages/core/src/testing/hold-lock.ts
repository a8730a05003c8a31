import type { IDisposable } from '../lifecycle.js';
import type { Logger } from '../services.js';
import { createCore } from '../create-core.js';
import { JobLoader } from '../job/job-loader.js';
import { Repositories } from '../repository/repositories.js';
import { RepositoryLocks } from '../repository/lock.js';

export interface HoldLockOptions {
  /** The job file whose repository to lock. */
  job: string;
  pluginsFile: string;
  /** Holds the repository password the job names. */
  env: NodeJS.ProcessEnv;
  /** What the lock says is running, e.g. `prune`. */
  operation: string;
  exclusive: boolean;
}

/**
 * Takes a lock on a job's repository the way a running cairn operation does, from this
 * process, and holds it until disposed: for testing what other processes do meanwhile
 * (exit 11). Rejects with RepositoryLockedError when the lock cannot be taken.
 */
export async function holdRepositoryLock(options: HoldLockOptions): Promise<IDisposable> {
  const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
  const core = await createCore({ pluginsFile: options.pluginsFile, logger: quiet, env: options.env });
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let acquired!: () => void;
  const locked = new Promise<void>((resolve) => (acquired = resolve));
  const job = await core.get(JobLoader).load(options.job);
  const holding = core.get(Repositories).withRepository(job, (repository) =>
    core.get(RepositoryLocks).withLock(repository, options.operation, options.exclusive, () => {
      acquired();
      return released;
    }),
  );
  try {
    await Promise.race([locked, holding]);
  } catch (err) {
    await core.dispose();
    throw err;
  }
  return {
    async dispose() {
      release();
      await holding.finally(() => core.dispose());
    },
  };
}

export interface ForeignLockOptions extends Omit<HoldLockOptions, 'operation' | 'exclusive'> {
  /** The lock object as another cairn (another host, a dead process) would have written it. */
  lock: { exclusive: boolean; mode?: string; operation: string; hostname: string; pid: number; time: string; started?: string };
}

/** Writes a lock object into a job's repository as another process or host would, and leaves it there; returns its id. */
export async function writeForeignLock(options: ForeignLockOptions): Promise<string> {
  const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
  const core = await createCore({ pluginsFile: options.pluginsFile, logger: quiet, env: options.env });
  try {
    const job = await core.get(JobLoader).load(options.job);
    return await core.get(Repositories).withRepository(job, async (repository) => (await repository.putSealed('locks', Buffer.from(JSON.stringify(options.lock)))).id);
  } finally {
    await core.dispose();
  }
}
