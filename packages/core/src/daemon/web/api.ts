import { stat } from 'node:fs/promises';
import type { Logger } from '../../services.js';
import type { LoadedJob } from '../../job/job-loader.js';
import { statusView } from '../../cli/commands/status.js';
import { repositoryOf } from '../tasks.js';
import type { RunRecord, TaskKind, TaskState } from '../state.js';
import type { DashboardBackend, JobCommand, JobSummary, RunningTask } from './dashboard.js';
import { cairnJson } from './cairn-queries.js';
import { HttpError } from './http-error.js';
import type { RunHistory } from './history.js';
import type { LogRing } from './log-ring.js';
import { previewRestore } from './restore-preview.js';
import type { Restores } from './restores.js';
import { OPENAPI_DOCUMENT } from './openapi.js';
import type { ImageMounts } from './image-mounts.js';

export interface ApiServices {
  backend: DashboardBackend;
  /** Image snapshots' files, through `cairn mount`. */
  mounts: ImageMounts;
  restores: Restores;
  history: RunHistory;
  log: LogRing;
  logger: Logger;
}

export interface ApiRequest {
  method: string;
  params: string[];
  query: URLSearchParams;
  body: () => Promise<Record<string, unknown>>;
}

export interface ApiResponse {
  status: number;
  body: unknown;
}

type Handler = (services: ApiServices, request: ApiRequest) => Promise<ApiResponse>;

interface Route {
  method: string;
  /** As the OpenAPI document writes it: `/api/jobs/{job}/run`. */
  path: string;
  pattern: RegExp;
  handler: Handler;
}

const route = (method: string, path: string, handler: Handler): Route => ({ method, path, pattern: new RegExp(`^${path.replace(/\{[a-zA-Z]+\}/g, '([^/]+)')}$`), handler });
const ok = (body: unknown, status = 200): ApiResponse => ({ status, body });

/** The API's routes (each `{name}` is one path segment, passed to the handler decoded, in order). */
export const ROUTES: Route[] = [
  route('GET', '/api/status', async ({ backend }) => ok(statusView(backend.state, backend.stateDir, undefined, true))),
  route('GET', '/api/jobs', async (services) => ok({ jobs: await Promise.all([...services.backend.jobs().values()].map((job) => jobSummary(services, job))) })),
  route('GET', '/api/jobs/{job}/snapshots', async (s, r) => ok({ snapshots: await query(s, r.params[0]!, (file) => ['snapshots', file]) })),
  route('GET', '/api/jobs/{job}/snapshots/{id}', async (s, r) => ok(await query(s, r.params[0]!, (file) => ['show', file, r.params[1]!]))),
  route('DELETE', '/api/jobs/{job}/snapshots/{id}', forgetSnapshot),
  route('GET', '/api/jobs/{job}/snapshots/{id}/files', listFiles),
  route('POST', '/api/jobs/{job}/run', runNow),
  route('POST', '/api/jobs/{job}/restore/preview', async (s, r) => {
    const body = await r.body();
    const command = commandFor(s, r.params[0]!);
    return ok(await previewRestore(command, { snapshot: text(body, 'snapshot'), to: text(body, 'to'), ...optionalList(body, 'include') }, s.logger));
  }),
  route('POST', '/api/jobs/{job}/restore', startRestore),
  route('GET', '/api/restores/{restoreId}', async (s, r) => {
    const restore = s.restores.get(r.params[0]!);
    if (!restore) throw new HttpError(404, 'CAIRN_NOT_FOUND', `No restore ${r.params[0]} is known to this daemon`);
    return ok(restore);
  }),
  route('GET', '/api/checks', checks),
  route('GET', '/api/log', async (s, r) => ok({ lines: s.log.last(boundedInt(r.query.get('lines'), 200, 1, 1000)) })),
  route('GET', '/api/openapi.json', async () => ok(OPENAPI_DOCUMENT)),
];

/** Tasks running now: the daemon's and the dashboard's restores. */
export function runningTasks(services: ApiServices): RunningTask[] {
  return [...services.backend.running(), ...services.restores.running()];
}

async function jobSummary(services: ApiServices, job: LoadedJob): Promise<JobSummary> {
  const { name, file } = job.info;
  const source = job.config.source as Record<string, unknown>;
  const state = services.backend.state.jobs[name];
  const tasks: Partial<Record<TaskKind, TaskState>> = state?.tasks ?? {};
  const running = runningTasks(services).find((task) => task.job === name);
  const history = (await services.history.read(name)).filter((record) => record.task === 'backup');
  return {
    name,
    file,
    kind: source.type === 'files' ? ('files' as const) : ('volume' as const),
    source: { type: String(source.type), ...(typeof source.path === 'string' && { path: source.path }), ...(Array.isArray(source.paths) && { paths: source.paths }) },
    target: { type: String((job.config.target as Record<string, unknown>).type), location: repositoryOf(job) },
    ...(tasks.backup?.schedule && { schedule: tasks.backup.schedule }),
    tasks,
    ...(running && { running }),
    history,
  };
}

function commandFor(services: ApiServices, job: string): JobCommand {
  const command = services.backend.commandFor(job);
  if (!command) throw new HttpError(404, 'CAIRN_JOB_NOT_FOUND', `This daemon runs no job named "${job}"`);
  return command;
}

async function query(services: ApiServices, job: string, args: (file: string) => string[]): Promise<any> {
  const command = commandFor(services, job);
  return cairnJson(command, args(command.job.info.file), services.logger);
}

async function listFiles(services: ApiServices, request: ApiRequest): Promise<ApiResponse> {
  const path = request.query.get('path') || '/';
  if (!path.startsWith('/')) throw new HttpError(400, 'CAIRN_USAGE', `path must be absolute, not "${path}"`);
  const command = commandFor(services, request.params[0]!);
  // A file snapshot is read from its trees; an image snapshot's filesystems are mounted read-only.
  const entries =
    command.job.config.source.type === 'files'
      ? await cairnJson(command, ['ls', command.job.info.file, request.params[1]!, path], services.logger)
      : await services.mounts.list(command, request.params[1]!, path);
  return ok({ path, entries });
}

async function forgetSnapshot(services: ApiServices, request: ApiRequest): Promise<ApiResponse> {
  const body = await request.body();
  const confirm = text(body, 'confirm');
  const snapshot = await query(services, request.params[0]!, (file) => ['show', file, request.params[1]!]);
  const id = String(snapshot.id);
  if (confirm !== id && !(confirm.length === 8 && id.startsWith(confirm))) {
    throw new HttpError(400, 'CAIRN_CONFIRMATION', `To forget snapshot ${id.slice(0, 8)}, "confirm" must be its id or the first 8 characters of it`);
  }
  await query(services, request.params[0]!, (file) => ['forget', file, id]);
  services.logger.info(`snapshot ${id.slice(0, 12)} of ${request.params[0]} forgotten from the dashboard`);
  return ok({ forgotten: id });
}

const TASKS: readonly TaskKind[] = ['backup', 'check', 'prune'];

async function runNow(services: ApiServices, request: ApiRequest): Promise<ApiResponse> {
  const body = await request.body();
  const task = body.task as TaskKind;
  if (!TASKS.includes(task)) throw new HttpError(400, 'CAIRN_USAGE', '"task" must be "backup", "check" or "prune"');
  if (body.readData !== undefined && typeof body.readData !== 'boolean') throw new HttpError(400, 'CAIRN_USAGE', '"readData" must be true or false');
  const result = services.backend.runNow(request.params[0]!, task, { readData: body.readData === true });
  if (result === 'unknown-job') throw new HttpError(404, 'CAIRN_JOB_NOT_FOUND', `This daemon runs no job named "${request.params[0]}"`);
  if (result === 'busy') throw new HttpError(409, 'CAIRN_BUSY', `The ${task} of ${request.params[0]} is already running or queued`);
  return ok({ accepted: true }, 202);
}

async function startRestore(services: ApiServices, request: ApiRequest): Promise<ApiResponse> {
  const body = await request.body();
  const command = commandFor(services, request.params[0]!);
  const to = text(body, 'to');
  if (!to.startsWith('/')) throw new HttpError(400, 'CAIRN_USAGE', `"to" must be an absolute path, not "${to}"`);
  const overwrite = body.overwrite;
  if (overwrite !== undefined && !['always', 'if-changed', 'never'].includes(overwrite as string)) throw new HttpError(400, 'CAIRN_USAGE', '"overwrite" must be "always", "if-changed" or "never"');
  const info = await stat(to).catch(() => undefined);
  let force = body.force === true;
  if (info?.isBlockDevice()) {
    if (body.confirmDevice !== to) throw new HttpError(400, 'CAIRN_CONFIRM_DEVICE', `${to} is a block device: everything on it is replaced; "confirmDevice" must repeat its name`);
    force = true;
  } else if (info?.isFile() && !force) {
    throw new HttpError(409, 'CAIRN_DESTINATION_EXISTS', `${to} already exists; set "force" to overwrite it`);
  }
  const restoreId = services.restores.start(command, {
    snapshot: text(body, 'snapshot'),
    to,
    ...optionalList(body, 'include'),
    ...optionalList(body, 'exclude'),
    ...(overwrite !== undefined && { overwrite: overwrite as 'always' }),
    force,
  });
  return ok({ restoreId }, 202);
}

async function checks(services: ApiServices): Promise<ApiResponse> {
  const result: Array<{ job: string; lastRun: RunRecord; lastSuccess?: RunRecord }> = [];
  for (const name of services.backend.jobs().keys()) {
    const task = services.backend.state.jobs[name]?.tasks.check;
    if (task?.lastRun) {
      result.push({ job: name, lastRun: task.lastRun, ...(task.lastSuccess && { lastSuccess: task.lastSuccess }) });
      continue;
    }
    // A check run only from the dashboard (the job file schedules none) is in the history alone.
    const runs = (await services.history.read(name)).filter((r) => r.task === 'check');
    const lastSuccess = runs.filter((r) => r.result === 'success' || r.result === 'warning').at(-1);
    if (runs.length > 0) result.push({ job: name, lastRun: runs.at(-1)!, ...(lastSuccess && { lastSuccess }) });
  }
  return ok({ checks: result });
}

function text(body: Record<string, unknown>, field: string): string {
  const value = body[field];
  if (typeof value !== 'string' || value === '') throw new HttpError(400, 'CAIRN_USAGE', `"${field}" must be a non-empty string`);
  return value;
}

function optionalList(body: Record<string, unknown>, field: 'include' | 'exclude'): { include?: string[]; exclude?: string[] } {
  const value = body[field];
  if (value === undefined) return {};
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v !== '')) throw new HttpError(400, 'CAIRN_USAGE', `"${field}" must be a list of paths`);
  return { [field]: value };
}

function boundedInt(text: string | null, fallback: number, min: number, max: number): number {
  const n = text === null ? fallback : Number(text);
  return Number.isInteger(n) ? Math.min(max, Math.max(min, n)) : fallback;
}

/** `GET /api/status`, … : every operation the server has (with `GET /api/events`, served outside the table). */
export function apiOperations(): string[] {
  return [...ROUTES.map((r) => `${r.method} ${r.path}`), 'GET /api/events'];
}
