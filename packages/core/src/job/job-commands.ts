import { spawn } from 'node:child_process';
import { HookCommandError } from '../errors.js';
import type { EngineHooks, JobInfo } from '../hooks.js';
import type { Logger } from '../services.js';

const PLUGIN_NAME = 'JobCommands';

interface JobHooksSection {
  before?: string[][];
  after?: string[][];
}

/**
 * The job file's `hooks.before` / `hooks.after` commands, as taps on the engine hooks:
 * `before` runs in `beforeRun` (a failure aborts the backup), `after` in `afterRun`, which
 * fires whatever the outcome, so `fsfreeze -u` runs even when the backup failed.
 */
export function tapJobCommands(hooks: Readonly<EngineHooks>, logger: Logger, cwd: (job: JobInfo) => string): void {
  hooks.beforeRun.tapPromise(PLUGIN_NAME, async (job) => {
    for (const argv of sectionOf(job).before ?? []) await runCommand(argv, cwd(job), 'before', logger);
  });
  hooks.afterRun.tapPromise(PLUGIN_NAME, async (job) => {
    let firstError: unknown;
    for (const argv of sectionOf(job).after ?? []) {
      try {
        await runCommand(argv, cwd(job), 'after', logger);
      } catch (err) {
        firstError ??= err;
      }
    }
    if (firstError) throw firstError;
  });
}

function sectionOf(job: JobInfo): JobHooksSection {
  return (job.job.hooks as JobHooksSection | undefined) ?? {};
}

function runCommand(argv: string[], cwd: string, phase: string, logger: Logger): Promise<void> {
  const [command, ...args] = argv;
  logger.info(`running ${phase} command: ${argv.join(' ')}`);
  return new Promise((resolve, reject) => {
    // Output goes to our stderr so that `--json` on stdout stays parseable.
    const child = spawn(command!, args, { cwd, stdio: ['ignore', 2, 2] });
    child.on('error', (err) => reject(new HookCommandError(`The ${phase} command ${command} could not be started: ${err.message}`, { cause: err })));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new HookCommandError(`The ${phase} command \`${argv.join(' ')}\` failed (${signal ? `signal ${signal}` : `exit code ${code}`})`));
    });
  });
}
