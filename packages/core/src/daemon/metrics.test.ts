import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import { MetricsError, UsageError } from '../errors.js';
import { sampleDaemonState } from '../testing/daemon-states.js';
import { METRICS_CONTENT_TYPE, parseListenAddress, renderMetrics, startMetricsServer, writeMetricsTextfile } from './metrics.js';

/** What parse-prometheus-text-format (a port of Prometheus' own text parser) gives. */
interface ParsedFamily {
  name: string;
  help: string;
  type: string;
  metrics: Array<{ value: string; labels?: Record<string, string> }>;
}
const parsePrometheusText = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => ParsedFamily[];

const NOW = new Date('2030-01-15T02:10:00.000Z');

/** Parses `text` with the real parser and checks what it leaves loose: names, order, values. */
function parseStrictly(text: string): ParsedFamily[] {
  const families = parsePrometheusText(text);
  const declared = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => m[1]);
  expect(families.map((f) => f.name)).toEqual(declared);
  expect(new Set(declared).size).toBe(declared.length);
  for (const family of families) {
    expect(family.name).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*$/);
    expect(['GAUGE', 'COUNTER']).toContain(family.type);
    expect(family.help).not.toBe('');
    for (const sample of family.metrics) {
      expect(sample.value).toMatch(/^(-?\d+(\.\d+)?(e[+-]?\d+)?|NaN|[+-]Inf)$/);
      for (const name of Object.keys(sample.labels ?? {})) expect(name).toMatch(/^[a-zA-Z_][a-zA-Z0-9_]*$/);
    }
  }
  expect(text.endsWith('\n')).toBe(true);
  return families;
}

function valueOf(families: ParsedFamily[], name: string, labels: Record<string, string> = {}): number | undefined {
  const family = families.find((f) => f.name === name);
  const sample = family?.metrics.find((m) => JSON.stringify(m.labels ?? {}) === JSON.stringify(labels));
  return sample === undefined ? undefined : Number(sample.value);
}

describe('renderMetrics', () => {
  const families = parseStrictly(renderMetrics(sampleDaemonState(), NOW));
  const backup = { job: 'system', task: 'backup' };

  it('gives the daemon start, the state update and the job file problems', () => {
    expect(valueOf(families, 'cairn_daemon_start_time_seconds')).toBe(Date.parse('2030-01-14T08:00:00Z') / 1000);
    expect(valueOf(families, 'cairn_daemon_state_updated_timestamp_seconds')).toBe(Date.parse('2030-01-15T02:10:00Z') / 1000);
    expect(valueOf(families, 'cairn_job_file_problems')).toBe(1);
  });

  it('gives the last run and last success of each task: time, duration, bytes, success', () => {
    expect(valueOf(families, 'cairn_job_last_success_timestamp_seconds', backup)).toBe(Date.parse('2030-01-15T02:04:12.750Z') / 1000);
    expect(valueOf(families, 'cairn_job_last_run_timestamp_seconds', backup)).toBe(Date.parse('2030-01-15T02:04:12.750Z') / 1000);
    expect(valueOf(families, 'cairn_job_last_run_duration_seconds', backup)).toBe(252.25);
    expect(valueOf(families, 'cairn_job_last_run_bytes_added', backup)).toBe(1_288_490_189);
    expect(valueOf(families, 'cairn_job_last_run_bytes_read', backup)).toBe(8_589_934_592);
    expect(valueOf(families, 'cairn_job_last_run_success', backup)).toBe(1);
    // A prune failed after an earlier success; a backup with a warning is not a success.
    expect(valueOf(families, 'cairn_job_last_run_success', { job: 'system', task: 'prune' })).toBe(0);
    expect(valueOf(families, 'cairn_job_last_success_timestamp_seconds', { job: 'system', task: 'prune' })).toBe(Date.parse('2030-01-07T03:01:30Z') / 1000);
    expect(valueOf(families, 'cairn_job_last_run_success', { job: 'data', task: 'backup' })).toBe(0);
    expect(valueOf(families, 'cairn_job_last_success_timestamp_seconds', { job: 'data', task: 'backup' })).toBeUndefined();
  });

  it('leaves out what a task has no value for, rather than inventing zeros', () => {
    // A prune adds no bytes; a check never ran.
    expect(valueOf(families, 'cairn_job_last_run_bytes_added', { job: 'system', task: 'prune' })).toBeUndefined();
    expect(valueOf(families, 'cairn_job_last_run_timestamp_seconds', { job: 'system', task: 'check' })).toBeUndefined();
    expect(valueOf(families, 'cairn_job_next_run_timestamp_seconds', { job: 'system', task: 'check' })).toBeUndefined();
  });

  it('marks the last result among all results', () => {
    const result = families.find((f) => f.name === 'cairn_job_last_run_result')!.metrics.filter((m) => m.labels?.job === 'data');
    expect(result.map((m) => [m.labels?.result, m.value])).toEqual([['success', '0'], ['warning', '1'], ['failure', '0'], ['skipped', '0'], ['interrupted', '0']]);
  });

  it('counts runs by result as a counter, every result present from zero', () => {
    const runs = families.find((f) => f.name === 'cairn_job_runs_total')!;
    expect(runs.type).toBe('COUNTER');
    expect(runs.metrics).toHaveLength(3 * 5 + 5);
    expect(valueOf(families, 'cairn_job_runs_total', { ...backup, result: 'success' })).toBe(14);
    expect(valueOf(families, 'cairn_job_runs_total', { ...backup, result: 'failure' })).toBe(1);
    expect(valueOf(families, 'cairn_job_runs_total', { ...backup, result: 'interrupted' })).toBe(0);
    expect(valueOf(families, 'cairn_job_runs_total', { job: 'data', task: 'backup', result: 'skipped' })).toBe(2);
  });

  it('gives the next run, and which tasks run now and for how long', () => {
    expect(valueOf(families, 'cairn_job_next_run_timestamp_seconds', backup)).toBe(Date.parse('2030-01-16T02:00:00Z') / 1000);
    expect(valueOf(families, 'cairn_job_running', backup)).toBe(0);
    expect(valueOf(families, 'cairn_job_running', { job: 'system', task: 'check' })).toBe(1);
    expect(valueOf(families, 'cairn_job_running_duration_seconds', { job: 'system', task: 'check' })).toBe(300);
    expect(valueOf(families, 'cairn_job_running_duration_seconds', backup)).toBeUndefined();
  });

  it('escapes backslashes, double quotes and line feeds in label values', () => {
    const state = sampleDaemonState();
    const name = 'odd \\ "job"\nname';
    state.jobs = { [name]: { ...state.jobs.system!, name } };
    const text = renderMetrics(state, NOW);
    expect(text).toContain('cairn_job_running{job="odd \\\\ \\"job\\"\\nname",task="backup"} 0\n');
    expect(valueOf(parseStrictly(text), 'cairn_job_running', { job: name, task: 'backup' })).toBe(0);
  });

  it('declares every family with HELP and TYPE even before any job ran', () => {
    const state = sampleDaemonState();
    state.jobs = {};
    state.problems = [];
    const empty = parseStrictly(renderMetrics(state, NOW));
    expect(empty.map((f) => f.name)).toEqual(families.map((f) => f.name));
  });
});

describe('startMetricsServer', () => {
  it('serves the metrics on GET /metrics, rendered afresh for every scrape', async () => {
    let scrapes = 0;
    const server = await startMetricsServer('127.0.0.1:0', () => `# HELP cairn_scrapes_test Scrapes.\n# TYPE cairn_scrapes_test counter\ncairn_scrapes_test ${++scrapes}\n`);
    onTestFinished(() => server.dispose());
    expect(server.address).toBe(`127.0.0.1:${server.port}`);
    expect(server.port).toBeGreaterThan(0);
    const first = await get(server.port, '/metrics');
    expect(first.status).toBe(200);
    expect(first.headers['content-type']).toBe(METRICS_CONTENT_TYPE);
    expect(valueOf(parseStrictly(first.body), 'cairn_scrapes_test')).toBe(1);
    expect(valueOf(parseStrictly((await get(server.port, '/metrics?x=1')).body), 'cairn_scrapes_test')).toBe(2);
  });

  it('serves renderMetrics output a parser reads back', async () => {
    const server = await startMetricsServer('localhost:0', () => renderMetrics(sampleDaemonState(), NOW));
    onTestFinished(() => server.dispose());
    const response = await get(server.port, '/metrics');
    expect(valueOf(parseStrictly(response.body), 'cairn_job_last_run_bytes_added', { job: 'system', task: 'backup' })).toBe(1_288_490_189);
  });

  it('answers 404 for other paths, 405 for other methods, 500 when rendering fails', async () => {
    const server = await startMetricsServer('127.0.0.1:0', () => {
      throw new Error('state file is corrupt');
    });
    onTestFinished(() => server.dispose());
    expect((await get(server.port, '/')).status).toBe(404);
    expect((await get(server.port, '/metricsx')).status).toBe(404);
    const post = await get(server.port, '/metrics', 'POST');
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
    const failed = await get(server.port, '/metrics');
    expect(failed.status).toBe(500);
    expect(failed.body).toContain('state file is corrupt');
  });

  it('listens on IPv6 loopback', async () => {
    const server = await startMetricsServer('[::1]:0', () => '');
    onTestFinished(() => server.dispose());
    expect(server.address).toBe(`[::1]:${server.port}`);
    expect((await get(server.port, '/metrics', 'GET', '::1')).status).toBe(200);
  });

  it('stops listening when disposed, also with a scraper keeping its connection open', async () => {
    const server = await startMetricsServer('127.0.0.1:0', () => '');
    await get(server.port, '/metrics', 'GET', '127.0.0.1', true);
    await server.dispose();
    await expect(get(server.port, '/metrics')).rejects.toThrow(/ECONNREFUSED/);
  });

  it('says which address is taken', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    onTestFinished(() => new Promise<void>((resolve) => taken.close(() => resolve())));
    const port = (taken.address() as { port: number }).port;
    const error = await startMetricsServer(`127.0.0.1:${port}`, () => '').catch((err: unknown) => err);
    expect(error).toBeInstanceOf(MetricsError);
    expect((error as Error).message).toBe(`Cannot serve metrics on 127.0.0.1:${port}: EADDRINUSE`);
  });
});

describe('parseListenAddress', () => {
  it.each([
    ['9184', { host: '127.0.0.1', port: 9184 }],
    [':9184', { host: '127.0.0.1', port: 9184 }],
    ['127.0.0.1:9184', { host: '127.0.0.1', port: 9184 }],
    ['127.1.2.3:0', { host: '127.1.2.3', port: 0 }],
    ['[::1]:9184', { host: '::1', port: 9184 }],
    ['localhost:9184', { host: 'localhost', port: 9184 }],
  ])('reads %s', (text, expected) => {
    expect(parseListenAddress(text)).toEqual(expected);
  });

  it.each(['0.0.0.0:9184', '[::]:9184', '192.168.1.10:9184', '[2001:db8::1]:9184'])('refuses %s, which other hosts can reach, unless allowed', (text) => {
    expect(() => parseListenAddress(text)).toThrow(UsageError);
    expect(() => parseListenAddress(text)).toThrow(/can be reached from other hosts/);
    expect(parseListenAddress(text, { allowRemote: true }).port).toBe(9184);
  });

  it.each(['', 'metrics', '127.0.0.1', '127.0.0.1:70000', '::1:9184', 'example.com:9184', '127.0.0.1:-1'])('refuses "%s"', (text) => {
    expect(() => parseListenAddress(text)).toThrow(UsageError);
  });
});

describe('writeMetricsTextfile', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-metrics-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('replaces a .prom file whole, readable by node_exporter whatever the umask', async () => {
    const path = join(dir, 'cairn.prom');
    const oldMask = process.umask(0o077);
    try {
      await writeMetricsTextfile(path, 'old\n');
      await writeMetricsTextfile(path, renderMetrics(sampleDaemonState(), NOW));
    } finally {
      process.umask(oldMask);
    }
    expect(valueOf(parseStrictly(await readFile(path, 'utf8')), 'cairn_job_file_problems')).toBe(1);
    expect((await stat(path)).mode & 0o777).toBe(0o644);
    expect(await readdir(dir)).toEqual(['cairn.prom']);
  });

  it('refuses a file the textfile collector would not read', async () => {
    for (const name of ['cairn.txt', 'cairn', 'cairn.prom.tmp']) {
      await expect(writeMetricsTextfile(join(dir, name), '')).rejects.toThrow(/must end in \.prom/);
    }
    expect(await readdir(dir)).toEqual([]);
  });
});

interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A real HTTP request to the server; `keepOpen` leaves the connection open as Prometheus does. */
function get(port: number, path: string, method = 'GET', host = '127.0.0.1', keepOpen = false): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, method, agent: keepOpen ? undefined : false, headers: keepOpen ? { connection: 'keep-alive' } : {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
