import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { inject, injectable } from '../vendor.js';
import { JobFileError } from '../errors.js';
import { Environment } from '../services.js';
import type { JobInfo } from '../hooks.js';
import type { CodecSettings } from '../codec.js';
import type { SecretRef, TargetSettings } from '../target.js';
import type { SourceSettings } from '../source.js';
import type { NotifierSettings } from '../notify.js';
import { PluginHost } from '../plugins/plugin-host.js';
import { JobSchema } from './job-schema.js';
import { retentionProblems, type RetentionSettings } from '../retention/policy.js';
import type { CheckSettings, PruneSettings, ScheduleSettings } from './schedule-schema.js';
import { scheduleProblems } from '../daemon/schedule.js';
import { hookProblems, type JobHooks } from './hook-command.js';

/** A job file's settings, as the merged schema validated them (defaults filled in). */
export interface JobConfig {
  name: string;
  source: SourceSettings;
  target: TargetSettings;
  compression?: CodecSettings;
  password: SecretRef;
  chunkSize?: number;
  hooks?: JobHooks;
  retention?: RetentionSettings;
  notify?: NotifierSettings[];
  schedule?: ScheduleSettings;
  prune?: PruneSettings;
  check?: CheckSettings;
}

export interface LoadedJob {
  info: JobInfo;
  config: JobConfig;
  /** The job file's folder: relative paths in the job are relative to it. */
  baseDir: string;
  /** The job file's text, as read and validated. */
  text?: string;
}

/**
 * The daemon runs each task as `cairn <command> <job file>` with the job file's text it last
 * validated in these variables: the command uses that text for that file, so a version saved
 * broken meanwhile does not stop the job, and the run does what was validated.
 */
export const DAEMON_JOB_FILE_ENV = 'CAIRN_DAEMON_JOB_FILE';
export const DAEMON_JOB_TEXT_ENV = 'CAIRN_DAEMON_JOB_TEXT';

/** Reads and validates job files; no other I/O of a command happens before this succeeds. */
@injectable()
export class JobLoader {
  constructor(
    @inject(JobSchema) private readonly schema: JobSchema,
    @inject(PluginHost) private readonly plugins: PluginHost,
    @inject(Environment) private readonly environment: Environment,
  ) {}

  /** `file` is relative to the working folder. */
  async load(file: string): Promise<LoadedJob> {
    const path = resolve(this.environment.cwd, file);
    const text = this.#daemonText(path) ?? (await readJobFile(path));
    const { job, problems } = this.schema.validate(parseJobText(text, path));
    // What a JSON schema cannot say: durations that parse, zones this system knows.
    const retention = (job as JobConfig | null)?.retention;
    if (problems.length === 0 && retention) problems.push(...retentionProblems(retention).map((p) => `/retention/${p}`));
    if (problems.length === 0 && job) problems.push(...scheduleProblems(job as JobConfig));
    const hooks = (job as JobConfig | null)?.hooks;
    if (problems.length === 0 && hooks) problems.push(...hookProblems(hooks).map((p) => `/hooks/${p}`));
    if (problems.length > 0) {
      throw new JobFileError(`The job file ${path} is invalid:\n${problems.map((p) => `  ${p}`).join('\n')}${this.#brokenPluginsHint()}`);
    }
    const config = job as JobConfig;
    return { info: { name: config.name, file: path, job: job as Record<string, unknown> }, config, baseDir: dirname(path), text };
  }

  #daemonText(path: string): string | undefined {
    const { env } = this.environment;
    return env[DAEMON_JOB_FILE_ENV] === path ? env[DAEMON_JOB_TEXT_ENV] : undefined;
  }

  /** A job may be invalid only because the plugin that would accept it is broken: say so. */
  #brokenPluginsHint(): string {
    const broken = this.plugins.failedPlugins();
    return broken.length > 0 ? `\nThese plugins could not be loaded:\n${broken.map((p) => `  ${p.problems.join('; ')}`).join('\n')}` : '';
  }
}

async function readJobFile(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new JobFileError(`Cannot read the job file ${path}: ${(err as Error).message}`, { cause: err });
  }
}

function parseJobText(text: string, path: string): unknown {
  // Editors on Windows save UTF-8 with a byte order mark, which JSON.parse refuses.
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new JobFileError(`The job file ${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}
