import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { extname } from 'node:path';
import { MetricsError, UsageError, describeSystemError } from '../errors.js';
import { writeFileAtomically } from './state-file.js';
import type { DaemonState, RunRecord, RunResult, TaskKind, TaskState } from './state.js';

/*
 * The daemon's state as Prometheus metrics, in the text exposition format 0.0.4: served on
 * `GET /metrics`, or written to a `*.prom` file for node_exporter's textfile collector.
 */

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const RESULTS: readonly RunResult[] = ['success', 'warning', 'failure', 'skipped', 'interrupted'];

type Labels = Record<string, string>;
interface Sample {
  labels: Labels;
  value: number;
}
interface Family {
  name: string;
  type: 'gauge' | 'counter';
  help: string;
  samples: Sample[];
}

/** One task of one job, with what its metrics are labelled by. */
interface TaskEntry {
  labels: Labels;
  task: TaskState;
}

/** Every metric of `state`; `now` gives how long the runs in progress have been going. */
export function renderMetrics(state: DaemonState, now: Date): string {
  return [...daemonFamilies(state), ...taskFamilies(taskEntries(state), now)].map(renderFamily).join('');
}

function daemonFamilies(state: DaemonState): Family[] {
  const single = (value: number): Sample[] => [{ labels: {}, value }];
  return [
    { name: 'cairn_daemon_start_time_seconds', type: 'gauge', help: 'When the daemon started, in seconds since the Unix epoch.', samples: single(seconds(state.daemon.started)) },
    { name: 'cairn_daemon_state_updated_timestamp_seconds', type: 'gauge', help: 'When the daemon last updated its state file, in seconds since the Unix epoch.', samples: single(seconds(state.daemon.updated)) },
    { name: 'cairn_job_file_problems', type: 'gauge', help: 'Job files that could not be loaded at the last (re)load (the previous valid version of each keeps running).', samples: single(state.problems.length) },
  ];
}

function taskEntries(state: DaemonState): TaskEntry[] {
  return Object.values(state.jobs).flatMap((job) =>
    Object.entries(job.tasks).flatMap(([kind, task]) => (task ? [{ labels: { job: job.name, task: kind as TaskKind }, task }] : [])),
  );
}

function taskFamilies(entries: TaskEntry[], now: Date): Family[] {
  const gauge = (name: string, help: string, value: (task: TaskState) => number | undefined): Family => ({ name, type: 'gauge', help, samples: samplesOf(entries, value) });
  const lastRun = (value: (run: RunRecord) => number | undefined) => (task: TaskState) => (task.lastRun ? value(task.lastRun) : undefined);
  return [
    gauge('cairn_job_last_success_timestamp_seconds', 'When the last successful run of the task finished, in seconds since the Unix epoch.', (t) => (t.lastSuccess ? seconds(t.lastSuccess.finished) : undefined)),
    gauge('cairn_job_last_run_timestamp_seconds', 'When the last run of the task finished, in seconds since the Unix epoch.', lastRun((r) => seconds(r.finished))),
    gauge('cairn_job_last_run_duration_seconds', 'How long the last run of the task took.', lastRun((r) => r.durationMs / 1000)),
    gauge('cairn_job_last_run_bytes_read', 'Bytes the last backup read from its source.', lastRun((r) => r.bytesRead)),
    gauge('cairn_job_last_run_bytes_added', 'Bytes the last backup added to the repository.', lastRun((r) => r.bytesAdded)),
    gauge('cairn_job_last_run_success', '1 when the last run of the task succeeded, 0 when it ended otherwise (warning, failure, skipped or interrupted).', lastRun((r) => (r.result === 'success' ? 1 : 0))),
    { name: 'cairn_job_last_run_result', type: 'gauge', help: '1 for the result of the last run of the task, 0 for the other results.', samples: lastResultSamples(entries) },
    { name: 'cairn_job_runs_total', type: 'counter', help: 'Runs of the task by result, since the daemon state was created.', samples: runCountSamples(entries) },
    gauge('cairn_job_next_run_timestamp_seconds', 'When the task runs next, in seconds since the Unix epoch.', (t) => (t.nextRun ? seconds(t.nextRun) : undefined)),
    gauge('cairn_job_running', '1 while a run of the task is in progress, else 0.', (t) => (t.running ? 1 : 0)),
    gauge('cairn_job_running_duration_seconds', 'How long the run in progress has been going.', (t) => (t.running ? Math.max(0, (now.getTime() - Date.parse(t.running.since)) / 1000) : undefined)),
  ];
}

function samplesOf(entries: TaskEntry[], value: (task: TaskState) => number | undefined): Sample[] {
  return entries.flatMap(({ labels, task }) => {
    const v = value(task);
    return v === undefined ? [] : [{ labels, value: v }];
  });
}

function lastResultSamples(entries: TaskEntry[]): Sample[] {
  return entries.flatMap(({ labels, task }) => (task.lastRun ? RESULTS.map((result) => ({ labels: { ...labels, result }, value: task.lastRun!.result === result ? 1 : 0 })) : []));
}

/** Every result, also those that never happened, so that `increase()` sees the first one. */
function runCountSamples(entries: TaskEntry[]): Sample[] {
  return entries.flatMap(({ labels, task }) => RESULTS.map((result) => ({ labels: { ...labels, result }, value: task.counts[result] ?? 0 })));
}

function seconds(iso: string): number {
  return Date.parse(iso) / 1000;
}

function renderFamily(family: Family): string {
  const lines = [`# HELP ${family.name} ${escapeHelp(family.help)}`, `# TYPE ${family.name} ${family.type}`];
  for (const sample of family.samples) lines.push(`${family.name}${renderLabels(sample.labels)} ${renderValue(sample.value)}`);
  return lines.join('\n') + '\n';
}

function renderLabels(labels: Labels): string {
  const pairs = Object.entries(labels).map(([name, value]) => `${name}="${escapeLabelValue(value)}"`);
  return pairs.length ? `{${pairs.join(',')}}` : '';
}

/** Label values escape backslash, double quote and line feed (format 0.0.4). */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text escapes backslash and line feed. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function renderValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

export interface MetricsServerOptions {
  /** Listen on an address other hosts can reach (the metrics name job files and repositories). */
  allowRemote?: boolean;
}

export interface MetricsServer {
  /** Where it listens, `127.0.0.1:9184` or `[::1]:9184`, with the port chosen when 0 was asked. */
  readonly address: string;
  readonly port: number;
  dispose(): Promise<void>;
}

/** A listen address: `127.0.0.1:PORT`, `[::1]:PORT`, `localhost:PORT`, or a port alone (127.0.0.1). */
export interface ListenAddress {
  host: string;
  port: number;
}

/** Parses `--metrics`'s address; refuses one other hosts can reach unless `allowRemote`. */
export function parseListenAddress(text: string, options: MetricsServerOptions = {}): ListenAddress {
  const match = /^(?:(?:\[([^\]]+)\]|([^:[\]]*)):)?(\d{1,5})$/.exec(text.trim());
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw new UsageError(`The metrics address must be HOST:PORT (an IP address or localhost, e.g. 127.0.0.1:9184 or [::1]:9184), or a port: not "${text}"`);
  const host = match[1] ?? (match[2] || '127.0.0.1');
  if (host !== 'localhost' && isIP(host) === 0) throw new UsageError(`The metrics address must name an IP address or localhost, not "${host}"`);
  if (!options.allowRemote && !isLoopback(host)) {
    throw new UsageError(`The metrics address ${text} can be reached from other hosts, and the metrics name job files and repositories: listen on 127.0.0.1 or [::1], or allow remote access explicitly`);
  }
  return { host, port };
}

function isLoopback(host: string): boolean {
  const v4 = host.replace(/^::ffff:/i, '');
  return host === 'localhost' || host === '::1' || (isIP(v4) === 4 && v4.startsWith('127.'));
}

/**
 * Serves `render()` on `GET /metrics` (also HEAD); other paths are 404, other methods 405.
 * Refuses a non-loopback address unless `allowRemote`.
 */
export async function startMetricsServer(address: string, render: () => string, options: MetricsServerOptions = {}): Promise<MetricsServer> {
  const { host, port } = parseListenAddress(address, options);
  const server = createServer((request, response) => answer(request, response, render));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new MetricsError(`Cannot serve metrics on ${address}: ${describeSystemError(err)}`, { cause: err })));
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  return {
    address: bound.family === 'IPv6' ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`,
    port: bound.port,
    dispose: () =>
      new Promise<void>((resolve) => {
        // Scrapers keep connections open: close them, or close() would wait for them.
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function answer(request: IncomingMessage, response: ServerResponse, render: () => string): void {
  const path = new URL(request.url ?? '/', 'http://localhost').pathname;
  if (path !== '/metrics') return reply(response, 404, 'Not found: the metrics are at /metrics\n');
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.setHeader('Allow', 'GET, HEAD');
    return reply(response, 405, 'Method not allowed: use GET\n');
  }
  let body: string;
  try {
    body = render();
  } catch (err) {
    return reply(response, 500, `Cannot render the metrics: ${(err as Error).message}\n`);
  }
  response.writeHead(200, { 'Content-Type': METRICS_CONTENT_TYPE, 'Content-Length': Buffer.byteLength(body) });
  response.end(request.method === 'HEAD' ? undefined : body);
}

function reply(response: ServerResponse, status: number, text: string): void {
  response.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  response.end(text);
}

/**
 * Writes the metrics for node_exporter's textfile collector, atomically (the collector must
 * never read half a file) and readable by all (node_exporter runs as another user; the
 * folder's permissions decide who may read it). Only `*.prom` files are read by the collector.
 */
export async function writeMetricsTextfile(path: string, text: string): Promise<void> {
  if (extname(path) !== '.prom') throw new UsageError(`The metrics text file must end in .prom (node_exporter's textfile collector reads only *.prom files): not ${path}`);
  await writeFileAtomically(path, text, 0o644);
}
