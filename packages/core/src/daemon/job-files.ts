import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import type { LoadedJob } from '../job/job-loader.js';
import type { DaemonProblem } from './state.js';

/** The job files a daemon runs: the files named, and the `*.json` files of the folders named (not their subfolders). */
export async function listJobFiles(paths: readonly string[], cwd: string): Promise<string[]> {
  const files = new Set<string>();
  for (const path of paths.map((p) => resolve(cwd, p))) {
    const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
      throw new UsageError(`Cannot read ${path}: ${err.code === 'ENOENT' ? 'no such file or folder' : err.message}`, { cause: err });
    });
    if (!info.isDirectory()) {
      files.add(path);
      continue;
    }
    for (const name of (await readdir(path)).sort()) {
      if (name.endsWith('.json') && !name.startsWith('.')) files.add(join(path, name));
    }
  }
  return [...files];
}

export interface JobSetLoad {
  /** By job name: the valid jobs, and the previous version of each file that is now invalid. */
  jobs: Map<string, LoadedJob>;
  problems: DaemonProblem[];
}

/**
 * The daemon's job files across reloads. A file that no longer loads is reported, and its last
 * valid version keeps running: a typo saved in an editor must not stop tonight's backup.
 */
export class JobSet {
  readonly #lastValid = new Map<string, LoadedJob>();

  constructor(private readonly load: (file: string) => Promise<LoadedJob>) {}

  async reload(files: readonly string[], now: Date): Promise<JobSetLoad> {
    const jobs = new Map<string, LoadedJob>();
    const problems: DaemonProblem[] = [];
    const problem = (file: string, message: string) => problems.push({ file, message, time: now.toISOString() });
    for (const file of files) {
      const job = await this.#loadOrKeep(file, problem);
      if (!job) continue;
      const other = jobs.get(job.info.name);
      if (other) problem(file, `the job name "${job.info.name}" is taken by ${other.info.file}; this file is not run`);
      else jobs.set(job.info.name, job);
    }
    for (const file of this.#lastValid.keys()) if (!files.includes(file)) this.#lastValid.delete(file);
    return { jobs, problems };
  }

  async #loadOrKeep(file: string, problem: (file: string, message: string) => void): Promise<LoadedJob | undefined> {
    try {
      const job = await this.load(file);
      this.#lastValid.set(file, job);
      return job;
    } catch (err) {
      const previous = this.#lastValid.get(file);
      problem(file, `${(err as Error).message}${previous ? '\n(its previous valid version keeps running)' : ''}`);
      return previous;
    }
  }
}
