import { appendFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunRecord } from '../state.js';

/** How many backup runs a job's history keeps (the dashboard's sparklines). */
export const HISTORY_LIMIT = 50;

/**
 * Past backup runs per job, in `<state dir>/history/<job>.jsonl`, one RunRecord a line, newest
 * last. The file is trimmed back to the limit when it has grown to twice that.
 */
export class RunHistory {
  readonly #dir: string;

  constructor(stateDir: string) {
    this.#dir = join(stateDir, 'history');
  }

  async append(job: string, record: RunRecord): Promise<void> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    const path = this.#path(job);
    await appendFile(path, JSON.stringify(record) + '\n', { mode: 0o600 });
    const lines = await this.#lines(job);
    if (lines.length >= 2 * HISTORY_LIMIT) await writeFile(path, lines.slice(-HISTORY_LIMIT).map((l) => l + '\n').join(''), { mode: 0o600 });
  }

  /** The last runs of `job` (up to the limit), oldest first; lines that do not parse are left out. */
  async read(job: string): Promise<RunRecord[]> {
    const records: RunRecord[] = [];
    for (const line of await this.#lines(job)) {
      try {
        records.push(JSON.parse(line) as RunRecord);
      } catch {
        // A line cut short by a crash: the others still count.
      }
    }
    return records.slice(-HISTORY_LIMIT);
  }

  async #lines(job: string): Promise<string[]> {
    const text = await readFile(this.#path(job), 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return '';
      throw err;
    });
    return text.split('\n').filter((line) => line.trim() !== '');
  }

  /** The job name made safe as a file name (names may hold any character). */
  #path(job: string): string {
    return join(this.#dir, `${encodeURIComponent(job).replace(/^\./, '%2E')}.jsonl`);
  }
}
