import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { startHttpCapture, type HttpCapture } from '@cairn/core/testing';
import {
  MiB,
  PASSWORD_ENV,
  backup,
  escapeRegExp,
  expectCleanFailure,
  expectSuccess,
  init,
  makeVolume,
  parseJson,
  runCli,
  startSmtpServer,
  tempDir,
  useSuiteScope,
  writeJob,
  type BackupSummary,
  type TestSmtpServer,
} from './utils/index.js';

/*
 * A job's `notify` list through the real CLI: a webhook, an email and a health check, each
 * against a real server on 127.0.0.1 that the test starts (an HTTP server recording requests,
 * smtp-server requiring a login). The notifications are sent before `cairn backup` exits, so
 * what the servers got is complete when the command returns.
 */

const SMTP_USER = 'cairn';
const SMTP_PASSWORD = 'mail secret';
const CHECK = '/ping/5b1f0c9e-8d2a-4f7e-b1c3-9e6a2d4f8c01';
const HOST = hostname();

describe('notifications', () => {
  const scope = useSuiteScope();
  let dir: string;
  let webhook: HttpCapture;
  let healthchecks: HttpCapture;
  let smtp: TestSmtpServer;
  let jobs = 0;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-notify-');
    await makeVolume(dir, 'disk', 16 * MiB, { seed: 71, randomBytes: 1 * MiB, textBytes: 256 * 1024 });
    webhook = await startHttpCapture();
    healthchecks = await startHttpCapture();
    smtp = await startSmtpServer(SMTP_USER, SMTP_PASSWORD);
    await init(await writeJob(dir, { source: './disk.img' }, 'plain.json'));
  });
  afterAll(async () => {
    await webhook?.close();
    await healthchecks?.close();
    await smtp?.close();
  });
  beforeEach(() => {
    webhook.requests.length = 0;
    healthchecks.requests.length = 0;
    smtp.received.length = 0;
  });

  /** The three notifiers; the webhook wants success and failure, the email failure (its default), the health check everything (its default). */
  const notifyAll = (webhookUrl = webhook.url + '/hook') => [
    { type: 'webhook', name: 'ops-webhook', url: webhookUrl, on: ['success', 'failure'] },
    { type: 'email', host: '127.0.0.1', port: smtp.port, starttls: 'never', username: SMTP_USER, password: { env: 'SMTP_PASSWORD' }, from: 'cairn <cairn@example.com>', to: 'ops@example.com' },
    { type: 'healthchecks', url: { env: 'HC_URL' } },
  ];

  async function notifiedJob(options: { source?: string; hooks?: object; notify?: object[] } = {}): Promise<{ job: string; name: string }> {
    const name = `notified-${++jobs}`;
    const job = await writeJob(dir, { name, source: options.source ?? './disk.img', extra: { notify: options.notify ?? notifyAll(), ...(options.hooks && { hooks: options.hooks }) } }, `${name}.json`);
    return { job, name };
  }

  const env = { ...PASSWORD_ENV, SMTP_PASSWORD, HC_URL: '' };
  beforeAll(() => {
    env.HC_URL = healthchecks.url + CHECK;
  });

  const webhookBodies = () => webhook.requests.map((r) => JSON.parse(r.body));
  const pings = () => healthchecks.requests.map((r) => `${r.method} ${r.url}`);

  test('a successful backup: the webhook gets success with the snapshot the CLI printed, the health check start then success, no email', async () => {
    const { job, name } = await notifiedJob();
    const summary: BackupSummary = await backup(job, { env });

    expect(webhookBodies()).toEqual([
      {
        event: 'success',
        job: name,
        host: HOST,
        operation: 'backup',
        time: expect.any(String),
        durationMs: expect.any(Number),
        snapshot: { id: summary.snapshot, bytesRead: summary.bytesRead, bytesAdded: summary.bytesAdded, size: summary.size },
        warnings: [],
        summary: expect.stringMatching(new RegExp(`^Backup of ${name} on ${escapeRegExp(HOST)} succeeded: snapshot ${summary.snapshot.slice(0, 12)}`)),
      },
    ]);
    expect(webhook.requests[0]!.headers['content-type']).toBe('application/json');
    expect(pings()).toEqual([`POST ${CHECK}/start`, `POST ${CHECK}`]);
    expect(healthchecks.requests[1]!.body).toContain(`Snapshot: ${summary.snapshot}`);
    expect(smtp.received).toEqual([]);
  });

  test('a backup whose source is missing exits 1 as before; the webhook and the email report the failure with the job, the host and the error; the health check gets /fail', async () => {
    const { job, name } = await notifiedJob({ source: './missing.img' });
    const missing = join(dir, 'missing.img');
    const result = await runCli(['backup', job], { env });
    expectCleanFailure(result, 1, new RegExp(escapeRegExp(missing)));

    const [failure] = webhookBodies();
    expect(webhookBodies()).toHaveLength(1);
    expect(failure).toMatchObject({ event: 'failure', job: name, host: HOST, operation: 'backup', warnings: [], error: { exitCode: 1 } });
    expect(failure.error.message).toContain(missing);
    expect(failure.error.code).toMatch(/^CAIRN_/);
    expect(failure.summary).toBe(`Backup of ${name} on ${HOST} failed: ${failure.error.message}`);
    expect(failure.snapshot).toBeUndefined();

    expect(smtp.received).toHaveLength(1);
    const { user, to, mail } = smtp.received[0]!;
    expect(user).toBe(SMTP_USER);
    expect(to).toEqual(['ops@example.com']);
    expect(mail.subject).toBe(`[cairn] ${name}: backup failed on ${HOST}`);
    expect(mail.text).toContain(`Job: ${name}\nHost: ${HOST}\nOperation: backup\nResult: failed\n`);
    expect(mail.text).toContain(`Error: ${failure.error.message}`);

    expect(pings()).toEqual([`POST ${CHECK}/start`, `POST ${CHECK}/fail`]);
    expect(healthchecks.requests[1]!.body.split('\n')[0]).toBe(failure.summary);
  });

  test('a failing hooks.before command: failure notifications naming the command', async () => {
    const { job, name } = await notifiedJob({ hooks: { before: [['test', '-e', 'no-such-file']] } });
    const result = await runCli(['backup', job], { env });
    expectCleanFailure(result, 1, /test -e no-such-file/);

    expect(webhookBodies()).toMatchObject([{ event: 'failure', job: name, error: { code: 'CAIRN_HOOK_TAP', exitCode: 1, message: expect.stringContaining('`test -e no-such-file` failed') } }]);
    expect(smtp.received.map((r) => r.mail.subject)).toEqual([`[cairn] ${name}: backup failed on ${HOST}`]);
    // The start ping goes out before the job's own before commands run.
    expect(pings()).toEqual([`POST ${CHECK}/start`, `POST ${CHECK}/fail`]);
  });

  test('a failing hooks.after command after a saved snapshot: a warning (the webhook wants none; the health check gets success) and exit 1', async () => {
    const { job, name } = await notifiedJob({
      hooks: { after: [['test', '-e', 'no-such-file']] },
      notify: [...notifyAll(), { type: 'webhook', name: 'warnings', url: webhook.url + '/warnings', on: ['warning'] }],
    });
    const result = await runCli(['backup', job, '--json'], { env });
    expect(result.exitCode, result.stderr).toBe(1);
    const summary = parseJson<BackupSummary>(result);

    expect(webhook.requests.map((r) => r.url)).toEqual(['/warnings']);
    const [warning] = webhookBodies();
    expect(warning).toMatchObject({ event: 'warning', job: name, snapshot: { id: summary.snapshot } });
    expect(warning.warnings).toEqual([expect.stringMatching(/^JobCommands \(snapshotSaved\): The after command `test -e no-such-file` failed/)]);
    expect(pings()).toEqual([`POST ${CHECK}/start`, `POST ${CHECK}`]);
    expect(smtp.received).toEqual([]);
  });

  test('a notifier whose server is down does not change the exit code of a successful backup; the failed delivery is logged', async () => {
    const gone = await startHttpCapture();
    await gone.close();
    const { job, name } = await notifiedJob({ notify: [{ type: 'webhook', name: 'dead-hook', url: gone.url + '/hook', on: ['success'] }, { type: 'healthchecks', url: { env: 'HC_URL' } }] });
    const result = await runCli(['backup', job], { env });
    expectSuccess(result);
    expect(result.stdout).toMatch(/^Snapshot [0-9a-f]{12} saved/);
    expect(result.stderr).toMatch(new RegExp(`^cairn: error: Notifying dead-hook \\(notify\\[0\\], webhook\\) of job ${name} \\(backup success\\) failed: `, 'm'));
    // The other notifier is not held back by the dead one.
    expect(pings()).toEqual([`POST ${CHECK}/start`, `POST ${CHECK}`]);
  });

  test('validate names the notifier plugin and the path of a bad notify entry', async () => {
    const { job } = await notifiedJob({
      notify: [
        { type: 'webhook', url: 'ftp://example.com', format: 'xml' },
        { type: 'email', host: 'smtp.example.com', from: 'a@example.com' },
        { type: 'healthchecks', url: { env: 'HC_URL' }, on: ['sometimes'] },
        { type: 'pager' },
      ],
    });
    const result = await runCli(['validate', job], { env });
    expectCleanFailure(
      result,
      2,
      /\/notify\/0\/url: must match \^https\?:\/\/, or \{"env": NAME\}, \{"file": PATH\} or \{"command": \[ARGV\.\.\.\]\} \(plugin cairn\.notify-webhook\)/,
      /\/notify\/0\/format: must be one of "json", "text", "ntfy", "slack", "discord", not "xml" \(plugin cairn\.notify-webhook\)/,
      /\/notify\/1: must have required property 'to' \(plugin cairn\.notify-email\)/,
      /\/notify\/2\/on\/0: must be one of "start", "success", "warning", "failure", not "sometimes" \(plugin cairn\.notify-healthchecks\)/,
      /\/notify\/3\/type: must be one of "webhook", "email", "healthchecks", not "pager"/,
    );
  });

  test('plugins lists the notifier contributions', async () => {
    const result = await runCli(['plugins', '--json']);
    expectSuccess(result);
    const plugins = parseJson<Array<{ id: string; contributes: string[] }>>(result);
    const contributions = Object.fromEntries(plugins.map((p) => [p.id, p.contributes]));
    expect(contributions).toMatchObject({
      'cairn.notify-webhook': ['notifier:webhook'],
      'cairn.notify-email': ['notifier:email'],
      'cairn.notify-healthchecks': ['notifier:healthchecks'],
    });
  });
});
