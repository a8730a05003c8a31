import { inject, injectable } from '../vendor.js';
import { EngineHooks, type JobRun } from '../hooks.js';
import { HookRunner, type TapFailure } from '../hook-runner.js';

/** What a job operation returns: its result, and the taps of `after` hooks that failed (logged already). */
export interface RunReport<T> {
  result: T;
  tapFailures: TapFailure[];
}

/**
 * The lifecycle every run of a job goes through: `beforeRun` (a failing tap aborts the run),
 * the work, then `failed` when anything threw, and `afterRun` always, exactly once.
 */
@injectable()
export class JobRuns {
  constructor(
    @inject(EngineHooks) private readonly hooks: Readonly<EngineHooks>,
    @inject(HookRunner) private readonly runner: HookRunner,
  ) {}

  /** `work` pushes the failures of the run's own `after` hooks into the array it gets. */
  async run<T>(run: JobRun, work: (tapFailures: TapFailure[]) => Promise<T>): Promise<RunReport<T>> {
    const tapFailures: TapFailure[] = [];
    let result: T;
    try {
      await this.runner.before(this.hooks.beforeRun, run);
      result = await work(tapFailures);
    } catch (error) {
      // The run's own error is the one to report; what the taps of these hooks throw is logged.
      await this.runner.after(this.hooks.failed, run, error);
      await this.runner.after(this.hooks.afterRun, run, { ok: false, error });
      throw error;
    }
    tapFailures.push(...(await this.runner.after(this.hooks.afterRun, run, { ok: true, tapFailures: [...tapFailures] })));
    return { result, tapFailures };
  }
}
