import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  FIXTURE_PLUGINS,
  PASSWORD_ENV,
  expectCleanFailure,
  isAlive,
  parseJson,
  readState,
  run,
  runCli,
  startWebDaemon,
  useScope,
  useSuiteScope,
  useTempDir,
  waitUntil,
  writePluginsFile,
  writeWebJobs,
  type WebDaemon,
} from './utils/index.js';
import { tempDir } from './utils/temp.js';

/*
 * The dashboard's safety: the token (file, cookie, bearer), refusal of cross-site requests,
 * loopback unless TLS is given, and `cairn ui` finding or starting the daemon.
 */

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A request with exactly these headers (fetch would add or refuse some: Host, Origin). */
function raw(url: string, options: { method?: string; path: string; headers?: Record<string, string>; ca?: Buffer; body?: string }): Promise<RawResponse> {
  const target = new URL(url);
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send({ agent: false, host: '127.0.0.1', port: target.port, method: options.method ?? 'GET', path: options.path, headers: options.headers, ...(options.ca && { ca: options.ca, servername: '127.0.0.1' }) }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.once('error', reject);
    req.end(options.body);
  });
}

describe('cairn daemon --web: token, cookie and cross-site requests', () => {
  const scope = useSuiteScope();
  let web: WebDaemon;
  let plugins: string;

  beforeAll(async () => {
    const dir = await tempDir(scope, 'cairn-web-security-');
    plugins = await writePluginsFile(dir, [join(FIXTURE_PLUGINS, 'web-app')]);
    web = await startWebDaemon(scope, { plugins, dir, backups: false });
  }, 120_000);

  test('the token is 32 random bytes in base64url, in a 0600 file of the state folder', async () => {
    expect(web.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(web.token, 'base64url').length).toBe(32);
    expect((await stat(join(web.stateDir, 'web-token'))).mode & 0o777).toBe(0o600);
  });

  test('requests without the token are refused: 401 JSON for the API, a page naming `cairn ui` for pages', async () => {
    const api = await fetch(`${web.url}/api/status`);
    expect(api.status).toBe(401);
    expect(await api.json()).toMatchObject({ error: { code: 'CAIRN_UNAUTHORIZED' } });
    const wrong = await fetch(`${web.url}/api/jobs`, { headers: { Authorization: `Bearer ${web.token.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'))}` } });
    expect(wrong.status).toBe(401);
    const page = await fetch(`${web.url}/jobs`);
    expect(page.status).toBe(401);
    expect(await page.text()).toMatch(/cairn ui/);
    expect((await fetch(`${web.url}/?token=not-the-token`, { redirect: 'manual' })).status).toBe(401);
    const events = await fetch(`${web.url}/api/events`);
    expect(events.status).toBe(401);
  });

  test('/?token=TOKEN sets the session cookie and redirects to the address without it; the cookie opens the app and the API', async () => {
    const login = await fetch(`${web.url}/jobs/web-files?token=${web.token}`, { redirect: 'manual' });
    expect(login.status).toBe(303);
    expect(login.headers.get('location')).toBe('/jobs/web-files');
    expect(login.headers.get('set-cookie')).toBe(`cairn_session=${web.token}; HttpOnly; SameSite=Strict; Path=/`);
    const cookie = `cairn_session=${web.token}`;
    const index = await fetch(`${web.url}/`, { headers: { cookie } });
    expect(index.status).toBe(200);
    expect(await index.text()).toMatch(/test dashboard fixture/);
    expect(index.headers.get('content-security-policy')).toBe("default-src 'self'");
    expect(index.headers.get('x-content-type-options')).toBe('nosniff');
    expect(index.headers.get('referrer-policy')).toBe('no-referrer');
    // A route of the app's own is its index.html; an asset is served with its type.
    expect(await (await fetch(`${web.url}/jobs/web-files/snapshots`, { headers: { cookie } })).text()).toMatch(/test dashboard fixture/);
    const script = await fetch(`${web.url}/assets/app.js`, { headers: { cookie } });
    expect(script.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect(await script.text()).toBe(await readFile(join(FIXTURE_PLUGINS, 'web-app/app/assets/app.js'), 'utf8'));
    // Nothing outside the app's folder.
    const escape = await raw(web.url, { path: '/..%2f..%2f..%2fpackage.json', headers: { cookie } });
    expect(escape.body).toMatch(/test dashboard fixture/);
    const status = await fetch(`${web.url}/api/status`, { headers: { cookie } });
    expect(status.status).toBe(200);
    expect(status.headers.get('cache-control')).toBe('no-store');
  });

  test('a state-changing request without X-Cairn-Request, from another origin or site, or naming another host is refused with 403', async () => {
    const cookie = `cairn_session=${web.token}`;
    const body = JSON.stringify({ task: 'backup' });
    const post = (headers: Record<string, string>) => raw(web.url, { method: 'POST', path: '/api/jobs/nobody/run', headers: { cookie, 'content-type': 'application/json', ...headers }, body });
    const refusals = [
      await post({}),
      await post({ 'x-cairn-request': '1', origin: 'http://evil.example' }),
      await post({ 'x-cairn-request': '1', origin: 'null' }),
      await post({ 'x-cairn-request': '1', 'sec-fetch-site': 'cross-site' }),
      await post({ 'x-cairn-request': '1', host: 'evil.example:80' }),
      await raw(web.url, { method: 'DELETE', path: '/api/jobs/nobody/snapshots/latest', headers: { cookie, 'content-type': 'application/json' }, body: '{"confirm":"x"}' }),
    ];
    for (const refused of refusals) {
      expect(refused.status, refused.body).toBe(403);
      expect(JSON.parse(refused.body)).toMatchObject({ error: { code: 'CAIRN_CROSS_SITE' } });
    }
    // The same request from the page itself gets through the check (the job does not exist: 404).
    const own = await post({ 'x-cairn-request': '1', origin: web.url, 'sec-fetch-site': 'same-origin' });
    expect(own.status, own.body).toBe(404);
    // A CORS preflight is never approved, and no response carries CORS headers.
    const preflight = await raw(web.url, { method: 'OPTIONS', path: '/api/jobs/nobody/run', headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'x-cairn-request' } });
    for (const response of [preflight, own, ...refusals]) expect(Object.keys(response.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
    expect(preflight.status).toBeGreaterThanOrEqual(400);
  });

  test('cairn ui finds the running daemon and prints its address with the token', async () => {
    const json = parseJson(await runCli(['ui', '--state-dir', web.stateDir, '--json']));
    expect(json).toEqual({ url: web.loginUrl });
    const text = await runCli(['ui', '--state-dir', web.stateDir]);
    expect(text.exitCode, text.stderr).toBe(0);
    expect(text.stdout).toBe(`${web.loginUrl}\n`);
  });
});

describe('cairn daemon --web: addresses and TLS', () => {
  test('an address other than loopback is refused without --web-allow-remote and TLS (exit 2)', async () => {
    const dir = await useTempDir();
    const job = join(dir, 'job.json');
    expectCleanFailure(await runCli(['daemon', job, '--state-dir', dir, '--web', '0.0.0.0:8780']), 2, /--web-allow-remote/);
    expectCleanFailure(await runCli(['daemon', job, '--state-dir', dir, '--web', '0.0.0.0:8780', '--web-allow-remote']), 2, /needs TLS/);
    expectCleanFailure(await runCli(['daemon', job, '--state-dir', dir, '--web', '127.0.0.1:8780', '--web-tls-cert', join(dir, 'cert.pem')]), 2, /go together/);
    expectCleanFailure(await runCli(['daemon', job, '--state-dir', dir, '--web', 'example.com:8780']), 2, /IP address or localhost/);
  });

  test('with --web-allow-remote and a certificate it serves HTTPS, and the session cookie is Secure', async () => {
    const scope = useScope();
    const dir = await tempDir(scope, 'cairn-web-tls-');
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
    const plugins = await writePluginsFile(dir, [join(FIXTURE_PLUGINS, 'web-app')]);
    const web = await startWebDaemon(scope, { plugins, dir, backups: false, web: '0.0.0.0:0', extraArgs: ['--web-allow-remote', '--web-tls-cert', cert, '--web-tls-key', key] });
    expect(web.url).toMatch(/^https:\/\/0\.0\.0\.0:\d+$/);
    const ca = await readFile(cert);
    const login = await raw(web.url, { path: `/?token=${web.token}`, ca });
    expect(login.status).toBe(303);
    expect(login.headers['set-cookie']).toEqual([`cairn_session=${web.token}; HttpOnly; SameSite=Strict; Path=/; Secure`]);
    const status = await raw(web.url, { path: '/api/status', headers: { authorization: `Bearer ${web.token}` }, ca });
    expect(status.status).toBe(200);
    expect(JSON.parse(status.body).daemon.web.url).toBe(web.url);
    // The browser's own origin on another host is the Host it used.
    const port = new URL(web.url).port;
    const own = await raw(web.url, { method: 'POST', path: '/api/jobs/nobody/run', ca, headers: { authorization: `Bearer ${web.token}`, host: `backup-host.example:${port}`, origin: `https://backup-host.example:${port}`, 'x-cairn-request': '1' }, body: '{"task":"backup"}' });
    expect(own.status, own.body).toBe(404);
    // Plain HTTP on the TLS port gets no answer.
    await expect(raw(web.url.replace('https:', 'http:'), { path: '/api/status' }).then((r) => r.status)).rejects.toThrow();
    expect((await web.stop()).exitCode).toBe(0);
  });
});

describe('cairn ui', () => {
  test('with no daemon running, starts one in the background for the jobs named and prints its address; with none and no jobs, exit 2', async () => {
    const scope = useScope();
    const dir = await tempDir(scope, 'cairn-ui-');
    const stateDir = join(dir, 'state');
    const plugins = await writePluginsFile(dir, [join(FIXTURE_PLUGINS, 'web-app')]);
    expectCleanFailure(await runCli(['ui', '--state-dir', stateDir], { plugins }), 2, /name the job files/);
    const jobs = await writeWebJobs(dir);
    const started = await runCli(['ui', jobs.files.file, jobs.volume.file, '--state-dir', stateDir, '--web', '127.0.0.1:0', '--json'], { plugins, env: PASSWORD_ENV });
    const state = await readState(stateDir);
    if (state?.daemon?.pid) scope.defer('stop the daemon cairn ui started', () => isAlive(state.daemon.pid).then((alive) => alive && process.kill(state.daemon.pid, 'SIGKILL')));
    const { url } = parseJson(started);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[A-Za-z0-9_-]{43}$/);
    expect(url).toBe(`${state.daemon.web.url}/?token=${(await readFile(join(stateDir, 'web-token'), 'utf8')).trim()}`);
    const login = await fetch(url, { redirect: 'manual' });
    expect(login.status).toBe(303);
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
    expect(((await (await fetch(`${state.daemon.web.url}/api/jobs`, { headers: { cookie } })).json()) as any).jobs.map((j: any) => j.name).sort()).toEqual(['web-files', 'web-volume']);
    // The next `cairn ui` finds it.
    expect(parseJson(await runCli(['ui', '--state-dir', stateDir, '--json'], { plugins }))).toEqual({ url });
    expect(await readFile(join(stateDir, 'daemon.log'), 'utf8')).toMatch(/dashboard at http:\/\/127\.0\.0\.1/);
    process.kill(state.daemon.pid, 'SIGTERM');
    await waitUntil('the daemon ended', async () => !(await isAlive(state.daemon.pid)));
    expect((await readState(stateDir)).daemon).toMatchObject({ stopped: expect.any(String) });
    expect((await readState(stateDir)).daemon.web).toBeUndefined();
  });
});
