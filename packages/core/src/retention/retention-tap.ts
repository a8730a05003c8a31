import { dirname } from 'node:path';
import { inject, injectable } from '../vendor.js';
import { UsageError } from '../errors.js';
import type { BackupRun, EngineHooks, HookContribution, JobInfo } from '../hooks.js';
import { Logger } from '../services.js';
import type { JobConfig, LoadedJob } from '../job/job-loader.js';
import type { BackupOptions } from '../operations/backup.js';
import { ForgetOperation } from '../operations/forget.js';
import { isEmptyPolicy } from './policy.js';
import { isIncompleteSnapshot } from '../repository/snapshot.js';

const PLUGIN_NAME = 'Retention';

/** What retention did after a backup (`backup --forget`): the `forget` member of its JSON. */
export interface RetentionApplied {
  /** Ids of the snapshots removed. */
  removed: string[];
  /** How many of the job's snapshots it kept, the new one among them. */
  kept: number;
}

/**
 * `backup --forget`: once the snapshot is saved (and the backup's lock released), the job's
 * `retention` is applied exactly as `cairn forget <job>` applies it. A tap on the run's
 * `snapshotSaved`, so a failure leaves the snapshot standing: it is logged with this tap's
 * name and the command exits 1. An incomplete snapshot (`--rescue` over unreadable sectors)
 * does not count: it must not push complete ones out, so retention waits for the next full one.
 */
@injectable()
export class RetentionTap implements HookContribution {
  readonly #applied = new WeakMap<BackupRun, RetentionApplied>();

  constructor(
    @inject(ForgetOperation) private readonly forget: ForgetOperation,
    @inject(Logger) private readonly logger: Logger,
  ) {}

  tapHooks(hooks: Readonly<EngineHooks>): void {
    hooks.backup.tap(PLUGIN_NAME, (run) => {
      if (!run.options.forget) return;
      run.hooks.snapshotSaved.tapPromise(PLUGIN_NAME, async (saved) => {
        if (isIncompleteSnapshot(saved.manifest)) {
          this.logger.warn(`Retention not applied: snapshot ${saved.id.slice(0, 12)} is incomplete, and an incomplete snapshot does not replace complete ones; the next complete backup applies it`);
          return;
        }
        const result = await this.forget.run(loadedJobOf(run.job));
        const kept = result.groups.reduce((n, group) => n + group.keep.length, 0);
        this.#applied.set(run, { removed: result.removed, kept });
      });
    });
  }

  /** What retention did after this run's snapshot; undefined when it did not run (not asked, an incomplete snapshot, or it failed). */
  appliedTo(run: BackupRun): RetentionApplied | undefined {
    return this.#applied.get(run);
  }
}

/** A usage error, before anything runs, when `--forget` is asked of a job without a retention policy. */
export function checkForgetOption(job: LoadedJob, options: BackupOptions): void {
  if (!options.forget) return;
  const { timeZone: _zone, ...policy } = job.config.retention ?? {};
  if (isEmptyPolicy(policy)) {
    throw new UsageError(`--forget applies the job's "retention", and ${job.info.file} has ${job.config.retention ? 'no rule that keeps anything' : 'none'}: add one (e.g. "retention": { "keepLast": 7 }) or leave out --forget`);
  }
}

/** The run's job as the operations take it (the run carries the validated job file). */
function loadedJobOf(info: JobInfo): LoadedJob {
  return { info, config: info.job as unknown as JobConfig, baseDir: dirname(info.file) };
}
