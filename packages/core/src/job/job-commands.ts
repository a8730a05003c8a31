import { spawn } from 'node:child_process';
import { dirname } from 'node:path';
import { inject, injectable } from '../vendor.js';
import { HookCommandError } from '../errors.js';
import type { EngineHooks, HookContribution, JobRun } from '../hooks.js';
import { Environment, Logger } from '../services.js';

const PLUGIN_NAME = 'JobCommands';

interface JobHooksSection {
  before?: string[][];
  after?: string[][];
}

/**
 * The job file's `hooks.before` / `hooks.after` commands, as taps on the engine hooks, for
 * backups: `before` runs in `beforeRun` (a failure aborts the backup), `after` in `afterRun`,
 * which fires whatever the outcome, so `fsfreeze -u` runs even when the backup failed. Every
 * `after` command runs even when an earlier one failed. Commands run in the job file's folder.
 */
@injectable()
export class JobCommands implements HookContribution {
  constructor(
    @inject(Logger) private readonly logger: Logger,
    @inject(Environment) private readonly environment: Environment,
  ) {}

  tapHooks(hooks: Readonly<EngineHooks>): void {
    hooks.beforeRun.tapPromise(PLUGIN_NAME, async (run) => {
      for (const argv of commandsOf(run, 'before')) await this.#run(argv, run, 'before');
    });
    hooks.afterRun.tapPromise(PLUGIN_NAME, async (run) => {
      let firstError: unknown;
      for (const argv of commandsOf(run, 'after')) {
        try {
          await this.#run(argv, run, 'after');
        } catch (err) {
          firstError ??= err;
        }
      }
      if (firstError) throw firstError;
    });
  }

  #run(argv: string[], run: JobRun, phase: 'before' | 'after'): Promise<void> {
    const [command, ...args] = argv;
    this.logger.info(`running ${phase} command: ${argv.join(' ')}`);
    return new Promise((resolve, reject) => {
      // Output goes to stderr so that `--json` on stdout stays parseable.
      const child = spawn(command!, args, { cwd: dirname(run.job.file), stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.pipe(this.environment.stderr, { end: false });
      child.stderr.pipe(this.environment.stderr, { end: false });
      child.on('error', (err) => reject(new HookCommandError(`The ${phase} command ${command} could not be started: ${err.message}`, { cause: err })));
      child.on('close', (code, signal) => {
        if (code === 0) resolve();
        else reject(new HookCommandError(`The ${phase} command \`${argv.join(' ')}\` failed (${signal ? `signal ${signal}` : `exit code ${code}`})`));
      });
    });
  }
}

/** The job's commands for one phase; they belong to backups only. */
function commandsOf(run: JobRun, phase: keyof JobHooksSection): string[][] {
  if (run.operation !== 'backup') return [];
  return ((run.job.job.hooks as JobHooksSection | undefined) ?? {})[phase] ?? [];
}
