import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { apiOperations } from '@cairn/core';
import {
  ApiSchemaChecker,
  FIXTURE_PLUGINS,
  PASSWORD_ENV,
  WEB_FILES_TREE,
  attachLoop,
  expectSuccess,
  loopDevicesAvailable,
  makeVolume,
  parseJson,
  runCli,
  openEventStream,
  startWebDaemon,
  useSuiteScope,
  waitUntil,
  writeJob,
  writePluginsFile,
  type WebDaemon,
} from './utils/index.js';
import { tempDir } from './utils/temp.js';

/*
 * The dashboard's API against a real `cairn daemon --web` with two real jobs (files and
 * volume, local repositories, one backup each), every response checked against the OpenAPI
 * document the daemon serves. Security (token, cross-site, TLS) and `cairn ui` are in
 * web-security.test.ts.
 */

describe('cairn daemon --web: the API', () => {
  const scope = useSuiteScope();
  let web: WebDaemon;
  let schema: ApiSchemaChecker;
  let plugins: string;

  /** GET `path`, checked against the document's schema for `template`. */
  async function get(path: string, template = path): Promise<{ status: number; body: any }> {
    const res = await web.api(path);
    const body = await res.json();
    schema.check('GET', template, res.status, body);
    return { status: res.status, body };
  }

  async function send(method: string, path: string, template: string, body: unknown): Promise<{ status: number; body: any }> {
    const res = await web.api(path, { method, body });
    const json = await res.json();
    schema.check(method, template, res.status, json);
    return { status: res.status, body: json };
  }

  const cli = async (args: string[]) => parseJson(await runCli([...args, '--json'], { env: PASSWORD_ENV, plugins }));

  async function waitForRestore(restoreId: string): Promise<any> {
    return waitUntil(`restore ${restoreId} ended`, async () => {
      const { body } = await get(`/api/restores/${restoreId}`, '/api/restores/{restoreId}');
      return body.state === 'running' ? undefined : body;
    });
  }

  beforeAll(async () => {
    const dir = await tempDir(scope, 'cairn-web-api-');
    plugins = await writePluginsFile(dir, [join(FIXTURE_PLUGINS, 'web-app')]);
    web = await startWebDaemon(scope, { plugins, dir });
    const res = await web.api('/api/openapi.json');
    schema = new ApiSchemaChecker(await res.json());
  }, 120_000);

  test('the OpenAPI document compiles as JSON Schema 2020-12 and documents every route the server has', async () => {
    const { body: doc } = await get('/api/openapi.json');
    expect(doc.openapi).toBe('3.1.0');
    const documented = Object.entries(doc.paths).flatMap(([path, item]: [string, any]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${path}`));
    for (const key of ['GET /api/status', 'GET /api/jobs', 'GET /api/jobs/{job}/snapshots', 'GET /api/jobs/{job}/snapshots/{id}', 'DELETE /api/jobs/{job}/snapshots/{id}', 'GET /api/jobs/{job}/snapshots/{id}/files', 'POST /api/jobs/{job}/run', 'POST /api/jobs/{job}/restore/preview', 'POST /api/jobs/{job}/restore', 'GET /api/restores/{restoreId}', 'GET /api/checks', 'GET /api/log', 'GET /api/events']) {
      expect(documented).toContain(key);
    }
    expect(apiOperations().sort()).toEqual(documented.sort());
    // Every operation's every response schema compiles (and its references resolve).
    for (const key of documented) {
      const [method, path] = key.split(' ') as [string, string];
      for (const status of Object.keys(doc.paths[path][method.toLowerCase()].responses)) {
        if (path === '/api/events' && status === '200') continue;
        expect(() => schema.schemaFor(method, path, Number(status))).not.toThrow();
      }
    }
  });

  test('GET /api/status is what cairn status --json prints', async () => {
    const { status, body } = await get('/api/status');
    expect(status).toBe(200);
    const printed = await cli(['status', '--state-dir', web.stateDir]);
    const strip = (v: any) => ({ ...v, daemon: { ...v.daemon, updated: undefined } });
    expect(strip(body)).toEqual(strip(printed));
    expect(body.daemon.web.url).toBe(web.url);
    expect(body.jobs.map((j: any) => j.name).sort()).toEqual(['web-files', 'web-volume']);
  });

  test('GET /api/jobs lists both jobs with kind, source, target, schedule and tasks', async () => {
    const { body } = await get('/api/jobs');
    const byName = Object.fromEntries(body.jobs.map((j: any) => [j.name, j]));
    expect(byName['web-files']).toMatchObject({ kind: 'files', file: web.jobs.files.file, source: { type: 'files', paths: [web.jobs.files.sourceDir] }, target: { type: 'local', location: web.jobs.files.repository } });
    expect(byName['web-volume']).toMatchObject({ kind: 'volume', source: { type: 'volume', path: web.jobs.volume.image }, target: { type: 'local', location: web.jobs.volume.repository } });
    expect(byName['web-files'].schedule).toMatch(/0 3 1 1 \*/);
    expect(Object.keys(byName['web-volume'].tasks).sort()).toEqual(['backup', 'check']);
  });

  test('snapshots, one snapshot and a folder of files are what snapshots, show and ls --json print; errors are 404', async () => {
    const { body } = await get('/api/jobs/web-files/snapshots', '/api/jobs/{job}/snapshots');
    expect(body.snapshots).toEqual(await cli(['snapshots', web.jobs.files.file]));
    const id = body.snapshots[0].id;
    const shown = await get(`/api/jobs/web-files/snapshots/${id.slice(0, 8)}`, '/api/jobs/{job}/snapshots/{id}');
    expect(shown.body).toEqual(await cli(['show', web.jobs.files.file, id]));
    const folder = `${web.jobs.files.sourceDir}/docs`;
    const files = await get(`/api/jobs/web-files/snapshots/${id}/files?path=${encodeURIComponent(folder)}`, '/api/jobs/{job}/snapshots/{id}/files');
    expect(files.body.path).toBe(folder);
    expect(files.body.entries).toEqual(await cli(['ls', web.jobs.files.file, id, folder]));
    expect(files.body.entries.map((e: any) => e.name).sort()).toEqual(['readme.txt', 'report.bin', 'sub']);

    const missing = await get(`/api/jobs/web-files/snapshots/${id}/files?path=/no/such/folder`, '/api/jobs/{job}/snapshots/{id}/files');
    expect(missing).toMatchObject({ status: 404, body: { error: { code: 'CAIRN_PATH_NOT_FOUND' } } });
    const volume = (await get('/api/jobs/web-volume/snapshots', '/api/jobs/{job}/snapshots')).body.snapshots[0];
    expect(volume).toMatchObject({ kind: 'volume', layout: { mode: 'exact' } });
    // Random bytes, no filesystem: the mount has nothing to show (the next block lists a real one).
    const noFilesystem = await get(`/api/jobs/web-volume/snapshots/${volume.id}/files?path=/`, '/api/jobs/{job}/snapshots/{id}/files');
    expect(noFilesystem).toEqual({ status: 200, body: { path: '/', entries: [] } });
    expect((await get('/api/jobs/web-files/snapshots/ffffffff', '/api/jobs/{job}/snapshots/{id}')).status).toBe(404);
    expect((await get('/api/jobs/nobody/snapshots', '/api/jobs/{job}/snapshots')).status).toBe(404);
  });

  test('run now queues a backup: 202, a second one while it runs is 409; it makes a snapshot, a state event, progress events and a history record', async () => {
    const events = await openEventStream(`${web.url}/api/events`, { Authorization: `Bearer ${web.token}` });
    try {
      const initial = await events.waitFor('the first state event', (e) => e.event === 'state');
      schema.check('GET', '/api/status', 200, initial.data);
      const before = (await get('/api/jobs/web-files/snapshots', '/api/jobs/{job}/snapshots')).body.snapshots.length;
      expect(await send('POST', '/api/jobs/web-files/run', '/api/jobs/{job}/run', { task: 'backup' })).toEqual({ status: 202, body: { accepted: true } });
      const again = await send('POST', '/api/jobs/web-files/run', '/api/jobs/{job}/run', { task: 'backup' });
      expect(again).toMatchObject({ status: 409, body: { error: { code: 'CAIRN_BUSY' } } });
      const done = await events.waitFor('a state event with the backup done', (e) => e.event === 'state' && e.data.jobs.find((j: any) => j.name === 'web-files')?.tasks.backup.lastRun?.result === 'success');
      const snapshot = done.data.jobs.find((j: any) => j.name === 'web-files').tasks.backup.lastRun.snapshot;
      const after = (await get('/api/jobs/web-files/snapshots', '/api/jobs/{job}/snapshots')).body.snapshots;
      expect(after.length).toBe(before + 1);
      expect(after.at(-1).id).toBe(snapshot);
      const progress = events.events.filter((e) => e.event === 'progress' && e.data.job === 'web-files');
      expect(progress.length).toBeGreaterThan(0);
      expect(progress[0]!.data).toMatchObject({ task: 'backup', progress: { phase: 'backup' } });
      expect(events.events.some((e) => e.event === 'log' && /run requested from the dashboard/.test(e.data.message))).toBe(true);
      const job = (await get('/api/jobs')).body.jobs.find((j: any) => j.name === 'web-files');
      expect(job.history.at(-1)).toMatchObject({ task: 'backup', result: 'success', snapshot });
      expect(job.history.at(-1).bytesAdded).toBeGreaterThanOrEqual(0);
    } finally {
      events.close();
    }
  });

  test('a check with readData run from the dashboard appears in /api/checks', async () => {
    expect((await send('POST', '/api/jobs/web-volume/run', '/api/jobs/{job}/run', { task: 'check', readData: true })).status).toBe(202);
    const checks = await waitUntil('the check is recorded', async () => (await get('/api/checks')).body.checks.find((c: any) => c.job === 'web-volume'));
    expect(checks.lastRun).toMatchObject({ task: 'check', result: 'success' });
    const log = (await get('/api/log?lines=500', '/api/log')).body.lines;
    expect(log.some((l: any) => l.job === 'web-volume' && l.task === 'check' && /--read-data/.test(l.message))).toBe(true);
    expect((await send('POST', '/api/jobs/web-volume/run', '/api/jobs/{job}/run', { task: 'defrag' })).status).toBe(400);
  });

  test("restoring a file snapshot's folder writes identical files; the preview then names the files it would overwrite", async () => {
    const events = await openEventStream(`${web.url}/api/events`, { Authorization: `Bearer ${web.token}` });
    try {
      const to = join(web.dir, 'restored');
      const folder = `${web.jobs.files.sourceDir}/docs`;
      const preview = await send('POST', '/api/jobs/web-files/restore/preview', '/api/jobs/{job}/restore/preview', { snapshot: 'latest', to, include: [folder] });
      expect(preview.body).toEqual({ to, kind: 'new', exists: false, overwrites: [], needsDeviceConfirmation: false });
      const started = await send('POST', '/api/jobs/web-files/restore', '/api/jobs/{job}/restore', { snapshot: 'latest', to, include: [folder] });
      expect(started.status).toBe(202);
      const result = await waitForRestore(started.body.restoreId);
      expect(result, JSON.stringify(result)).toMatchObject({ state: 'done', result: { kind: 'files' } });
      for (const path of Object.keys(WEB_FILES_TREE)) {
        const restored = await readFile(join(to, web.jobs.files.sourceDir, path)).catch(() => undefined);
        if (path.startsWith('docs/')) expect(restored?.equals(WEB_FILES_TREE[path]!), path).toBe(true);
        else expect(restored, `${path} is outside the folder restored`).toBeUndefined();
      }
      await events.waitFor('the restore event', (e) => e.event === 'restore' && e.data.restoreId === started.body.restoreId && e.data.state === 'done');
      const again = await send('POST', '/api/jobs/web-files/restore/preview', '/api/jobs/{job}/restore/preview', { snapshot: 'latest', to, include: [folder] });
      expect(again.body.kind).toBe('folder');
      expect(again.body.overwrites.sort()).toEqual(['docs/readme.txt', 'docs/report.bin', 'docs/sub/notes.md'].map((p) => join(to, web.jobs.files.sourceDir, p)));
    } finally {
      events.close();
    }
  });

  test('restoring a volume snapshot over an existing image needs force', async () => {
    const to = join(web.dir, 'existing.img');
    await writeFile(to, 'old contents');
    const preview = await send('POST', '/api/jobs/web-volume/restore/preview', '/api/jobs/{job}/restore/preview', { snapshot: 'latest', to });
    expect(preview.body).toEqual({ to, kind: 'file', exists: true, size: 12, overwrites: [to], needsDeviceConfirmation: false });
    const refused = await send('POST', '/api/jobs/web-volume/restore', '/api/jobs/{job}/restore', { snapshot: 'latest', to });
    expect(refused).toMatchObject({ status: 409, body: { error: { code: 'CAIRN_DESTINATION_EXISTS' } } });
    expect(await readFile(to, 'utf8')).toBe('old contents');
    const started = await send('POST', '/api/jobs/web-volume/restore', '/api/jobs/{job}/restore', { snapshot: 'latest', to, force: true });
    expect(started.status).toBe(202);
    expect(await waitForRestore(started.body.restoreId)).toMatchObject({ state: 'done' });
    expect((await readFile(to)).equals(await readFile(web.jobs.volume.image))).toBe(true);
  });

  test('restoring to a block device (a loop device) needs the device name typed as confirmation', async () => {
    if (!loopDevicesAvailable()) return void console.warn('skipped: no loop devices here');
    const disk = join(web.dir, 'disk.img');
    await writeFile(disk, Buffer.alloc(4 * 1024 * 1024));
    const device = await attachLoop(scope, disk);
    const preview = await send('POST', '/api/jobs/web-volume/restore/preview', '/api/jobs/{job}/restore/preview', { snapshot: 'latest', to: device });
    expect(preview.body).toEqual({ to: device, kind: 'device', exists: true, size: 4 * 1024 * 1024, mounted: false, overwrites: [device], needsDeviceConfirmation: true });
    for (const confirmDevice of [undefined, '/dev/sda', device.replace('/dev/', '')]) {
      const refused = await send('POST', '/api/jobs/web-volume/restore', '/api/jobs/{job}/restore', { snapshot: 'latest', to: device, ...(confirmDevice && { confirmDevice }) });
      expect(refused).toMatchObject({ status: 400, body: { error: { code: 'CAIRN_CONFIRM_DEVICE' } } });
    }
    expect((await readFile(device)).every((byte) => byte === 0)).toBe(true);
    const started = await send('POST', '/api/jobs/web-volume/restore', '/api/jobs/{job}/restore', { snapshot: 'latest', to: device, confirmDevice: device });
    expect(started.status).toBe(202);
    expect(await waitForRestore(started.body.restoreId)).toMatchObject({ state: 'done' });
    expect((await readFile(device)).equals(await readFile(web.jobs.volume.image))).toBe(true);
  });

  test('forgetting a snapshot needs its id or 8-character prefix as confirmation', async () => {
    const [first] = (await get('/api/jobs/web-volume/snapshots', '/api/jobs/{job}/snapshots')).body.snapshots;
    const wrong = await send('DELETE', `/api/jobs/web-volume/snapshots/${first.id}`, '/api/jobs/{job}/snapshots/{id}', { confirm: 'deadbeef' });
    expect(wrong).toMatchObject({ status: 400, body: { error: { code: 'CAIRN_CONFIRMATION' } } });
    const gone = await send('DELETE', `/api/jobs/web-volume/snapshots/${first.id.slice(0, 12)}`, '/api/jobs/{job}/snapshots/{id}', { confirm: first.id.slice(0, 8) });
    expect(gone).toEqual({ status: 200, body: { forgotten: first.id } });
    expect((await cli(['snapshots', web.jobs.volume.file])).map((s: any) => s.id)).not.toContain(first.id);
  });

  test('every response met its schema, and the daemon ends cleanly', async () => {
    expect(schema.checked.size).toBeGreaterThanOrEqual(20);
    const result = await web.stop();
    expect(result.exitCode, result.stderr).toBe(0);
    const token = await stat(join(web.stateDir, 'web-token'));
    expect(token.mode & 0o777).toBe(0o600);
  });
});

describe('cairn daemon --web: the files of an image snapshot, through cairn mount', () => {
  const scope = useSuiteScope();

  test('an ext4 image snapshot is listed from its read-only mount (p0 for a bare filesystem), unmounted when the daemon stops', async () => {
    const dir = await tempDir(scope, 'cairn-web-mount-');
    const { image, files } = await makeVolume(dir, 'ext4', 16 * 1024 * 1024, { seed: 19, randomBytes: 1024 * 1024, textBytes: 256 * 1024, zeroBytes: 0, filesPerKind: 3 });
    const job = await writeJob(dir, { name: 'web-ext4', source: image, repository: './repo-ext4', extra: { schedule: { cron: '0 3 1 1 *' } } }, 'web-ext4.json');
    expectSuccess(await runCli(['init', job], { env: PASSWORD_ENV }));
    const made = parseJson<{ snapshot: string }>(await runCli(['backup', job, '--json'], { env: PASSWORD_ENV }));
    const web = await startWebDaemon(scope, { dir: join(dir, 'web'), extraArgs: [job] });
    const schema = new ApiSchemaChecker(await (await web.api('/api/openapi.json')).json());
    const list = async (path: string): Promise<{ status: number; body: any }> => {
      const res = await web.api(`/api/jobs/web-ext4/snapshots/${made.snapshot}/files?path=${encodeURIComponent(path)}`);
      const body: any = await res.json();
      schema.check('GET', '/api/jobs/{job}/snapshots/{id}/files', res.status, body);
      return { status: res.status, body };
    };

    const root = await list('/');
    expect(root.body.entries, JSON.stringify(root)).toMatchObject([{ path: '/p0', name: 'p0', type: 'dir' }]);
    const top = await list('/p0');
    const expected = [...new Set(files.map((f) => f.path.split('/')[0]!))];
    expect(top.body.entries.map((e: any) => e.name)).toEqual(expect.arrayContaining([...expected, 'lost+found']));
    const file = files.find((f) => f.size > 0)!;
    const one = await list(`/p0/${file.path}`);
    expect(one.body.entries).toMatchObject([{ path: `/p0/${file.path}`, type: 'file', size: file.size }]);
    expect((await list('/p0/no-such-file')).status).toBe(404);
    // `..` never leaves the snapshot: the path is normalised inside it (no /etc there: 404, not the daemon's /etc).
    expect((await list('/p0/../../etc')).status).toBe(404);
    expect((await list('/.cairn')).status).toBe(400);

    const mountsBefore = await readFile('/proc/self/mounts', 'utf8');
    expect(mountsBefore).toContain(join(web.stateDir, 'mounts'));
    expect((await web.stop()).exitCode).toBe(0);
    expect(await readFile('/proc/self/mounts', 'utf8')).not.toContain(join(web.stateDir, 'mounts'));
  }, 180_000);
});
