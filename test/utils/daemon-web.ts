import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT, runCli, expectSuccess, type CliResult } from './cli.js';
import { startDaemon, readState, waitUntil, type RunningDaemon } from './daemon.js';
import { writeFilesJob } from './files-job.js';
import { PASSWORD_ENV, writeJob } from './job.js';
import type { Scope } from './scope.js';
import { tempDir } from './temp.js';
import { randomBytesFor } from './volume.js';

/*
 * A real `cairn daemon --web` on a free loopback port, with two real jobs (a files job and a
 * volume job, each on its own local repository, initialised and backed up once), for the API
 * tests and the dashboard's browser tests.
 */

/** A schedule far away: the daemon runs nothing by itself during a test; "run now" does. */
export const YEARLY = { cron: '0 3 1 1 *' };

export interface WebDaemonJob {
  name: string;
  /** The job file. */
  file: string;
  repository: string;
}

export interface WebDaemon {
  /** `http://127.0.0.1:PORT` (https with `tls`), no trailing slash. */
  url: string;
  token: string;
  /** The address `cairn ui` prints: `url/?token=…`. */
  loginUrl: string;
  dir: string;
  stateDir: string;
  daemon: RunningDaemon;
  jobs: {
    /** `web-files`: backs up `sourceDir`. */
    files: WebDaemonJob & { sourceDir: string };
    /** `web-volume`: backs up `image` (4 MiB of seeded random bytes, exact). */
    volume: WebDaemonJob & { image: string };
  };
  /** `fetch(url + path)` with the token as a Bearer header and `X-Cairn-Request: 1`; a body object is sent as JSON. */
  api(path: string, init?: { method?: string; body?: unknown; headers?: Record<string, string> }): Promise<Response>;
  /** SIGTERM, and the daemon's exit. */
  stop(): Promise<CliResult>;
}

export interface WebDaemonOptions {
  /** A plugins.json for the daemon and the setup commands (default: the repository's, which enables packages/web). */
  plugins?: string;
  /** Back up each job once before the daemon starts (default true). */
  backups?: boolean;
  /** More `cairn daemon` arguments (e.g. TLS flags); `--web` is given with `web`. */
  extraArgs?: string[];
  /** The --web address (default 127.0.0.1:0: a free port). */
  web?: string;
  /** The folder to work in (default: a temporary folder removed with the scope). */
  dir?: string;
}

/** Files of the files job: a small tree with a subfolder. */
export const WEB_FILES_TREE: Record<string, Buffer> = {
  'docs/readme.txt': Buffer.from('cairn dashboard test\n'),
  'docs/report.bin': randomBytesFor('web-report', 200_000),
  'docs/sub/notes.md': Buffer.from('# notes\n\nrestored through the API\n'),
  'photo.raw': randomBytesFor('web-photo', 50_000),
};

/** Starts the daemon with --web, waits until it answers, returns what a test needs. The scope stops it. */
export async function startWebDaemon(scope: Scope, options: WebDaemonOptions = {}): Promise<WebDaemon> {
  const dir = options.dir ?? (await tempDir(scope, 'cairn-web-'));
  const plugins = options.plugins ?? join(REPO_ROOT, 'plugins.json');
  const jobs = await writeWebJobs(dir);
  for (const job of [jobs.files, jobs.volume]) {
    expectSuccess(await runCli(['init', job.file], { env: PASSWORD_ENV, plugins }));
    if (options.backups !== false) expectSuccess(await runCli(['backup', job.file, '--json'], { env: PASSWORD_ENV, plugins }));
  }
  const stateDir = join(dir, 'state');
  const daemon = startDaemon(scope, [jobs.files.file, jobs.volume.file, '--state-dir', stateDir, '--web', options.web ?? '127.0.0.1:0', ...(options.extraArgs ?? [])], { env: PASSWORD_ENV, plugins });
  const url = await waitUntil('the daemon serves the dashboard', async () => {
    if (daemon.child.exitCode !== null) throw new Error(`the daemon ended (exit ${daemon.child.exitCode}):\n${(await daemon.result).stderr}`);
    const state = await readState(stateDir);
    return state?.daemon?.pid === daemon.child.pid ? (state.daemon.web?.url as string | undefined) : undefined;
  });
  const token = (await readFile(join(stateDir, 'web-token'), 'utf8')).trim();
  const api: WebDaemon['api'] = (path, init = {}) =>
    fetch(url + path, {
      method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
      headers: { Authorization: `Bearer ${token}`, 'X-Cairn-Request': '1', ...(init.body !== undefined && { 'Content-Type': 'application/json' }), ...init.headers },
      ...(init.body !== undefined && { body: JSON.stringify(init.body) }),
    });
  return { url, token, loginUrl: `${url}/?token=${token}`, dir, stateDir, daemon, jobs, api, stop: () => daemon.stop() };
}

/** Writes the two jobs (and the files and image they back up) into `dir`. */
export async function writeWebJobs(dir: string): Promise<WebDaemon['jobs']> {
  const sourceDir = join(dir, 'files-source');
  for (const [path, data] of Object.entries(WEB_FILES_TREE)) {
    await mkdir(join(sourceDir, path, '..'), { recursive: true });
    await writeFile(join(sourceDir, path), data);
  }
  const image = join(dir, 'volume.img');
  await writeFile(image, randomBytesFor('web-volume', 4 * 1024 * 1024));
  const extra = { schedule: YEARLY, check: { schedule: YEARLY } };
  const files = await writeFilesJob(dir, { name: 'web-files', paths: [sourceDir], repository: './repo-files', extra }, 'web-files.json');
  const volume = await writeJob(dir, { name: 'web-volume', source: image, repository: './repo-volume', extra }, 'web-volume.json');
  return {
    files: { name: 'web-files', file: files, repository: join(dir, 'repo-files'), sourceDir },
    volume: { name: 'web-volume', file: volume, repository: join(dir, 'repo-volume'), image },
  };
}
