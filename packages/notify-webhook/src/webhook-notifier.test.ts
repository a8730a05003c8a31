import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Notification, NotifierCreateContext, NotifierFactory, PluginContext, SecretRef } from '@cairn/core';
import { createTestPluginContext, startHttpCapture, type HttpCapture } from '@cairn/core/testing';
import { activate } from './index.js';
import { fillTemplate, type WebhookSettings } from './webhook-notifier.js';

/*
 * The webhook notifier against a real HTTP server on 127.0.0.1 that records every request
 * and answers with the status the test sets.
 */

const PLUGIN_FOLDER = fileURLToPath(new URL('..', import.meta.url));

const env: Record<string, string> = { NTFY_TOKEN: 'tk_secret123' };
const context: NotifierCreateContext = {
  baseDir: '/',
  readSecret: async (ref: SecretRef) => {
    if (!('env' in ref) || env[ref.env] === undefined) throw new Error(`no secret for ${JSON.stringify(ref)}`);
    return env[ref.env]!;
  },
};

const failure: Notification = {
  event: 'failure',
  job: 'laptop-system',
  host: 'host1',
  operation: 'backup',
  time: '2026-05-01T02:00:00.000Z',
  durationMs: 1234,
  error: { message: 'The source "/dev/sdz" does not exist\nsecond line', code: 'CAIRN_SOURCE', exitCode: 1 },
  warnings: [],
  summary: 'Backup of laptop-system on host1 failed: The source "/dev/sdz" does not exist',
};

const success: Notification = {
  event: 'success',
  job: 'laptop-system',
  host: 'host1',
  operation: 'backup',
  time: '2026-05-01T02:00:00.000Z',
  durationMs: 5000,
  snapshot: { id: 'cd'.repeat(32), bytesRead: 2_000_000, bytesAdded: 300_000, size: 8_000_000 },
  warnings: [],
  summary: 'Backup of laptop-system on host1 succeeded: snapshot cdcdcdcdcdcd, 293.0 KiB added.',
};

describe('webhook notifier', () => {
  let server: HttpCapture;
  let plugin: PluginContext;
  let factory: NotifierFactory;
  beforeEach(async () => {
    server = await startHttpCapture();
    plugin = await createTestPluginContext(PLUGIN_FOLDER);
    await activate(plugin);
    factory = plugin.notifiers.get('webhook')!;
  });
  afterEach(async () => {
    await plugin.subscriptions.dispose();
    await server.close();
  });

  const send = (settings: Partial<WebhookSettings>, notification: Notification = failure, signal?: AbortSignal) =>
    factory.create({ type: 'webhook', url: server.url + '/hook', ...settings }, context).send(notification, signal ? { signal } : {});

  it('registers the webhook type its manifest declares, failure-only by default', async () => {
    expect(factory).toBeDefined();
    expect(factory.defaultEvents).toBeUndefined();
  });

  it('POSTs the notification as JSON, with the job\'s headers (a token from a secret ref)', async () => {
    await send({ headers: { Authorization: { env: 'NTFY_TOKEN' }, 'X-Source': 'cairn' } });
    const [request] = server.requests;
    expect(request!.method).toBe('POST');
    expect(request!.url).toBe('/hook');
    expect(request!.headers['content-type']).toBe('application/json');
    expect(request!.headers.authorization).toBe('tk_secret123');
    expect(request!.headers['x-source']).toBe('cairn');
    expect(JSON.parse(request!.body)).toEqual(failure);
  });

  it('takes the URL from a secret ref, and PUTs when asked', async () => {
    env.HOOK_URL = server.url + '/secret-path';
    await send({ url: { env: 'HOOK_URL' }, method: 'PUT' }, success);
    expect(server.requests.map((r) => `${r.method} ${r.url}`)).toEqual(['PUT /secret-path']);
    expect(JSON.parse(server.requests[0]!.body).snapshot.id).toBe(success.snapshot!.id);
  });

  it('ntfy: the summary as plain text; title, high priority and tags in headers', async () => {
    await send({ format: 'ntfy' });
    const [request] = server.requests;
    expect(request!.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(request!.body).toBe(failure.summary);
    expect(request!.headers.title).toBe('cairn: laptop-system backup failed on host1');
    expect(request!.headers.priority).toBe('high');
    expect(request!.headers.tags).toBe('rotating_light,cairn,laptop-system');
    await send({ format: 'ntfy' }, success);
    expect(server.requests[1]!.headers.priority).toBe('default');
    expect(server.requests[1]!.headers.tags).toBe('white_check_mark,cairn,laptop-system');
  });

  it('slack: {"text"} with the summary and the facts', async () => {
    await send({ format: 'slack' }, success);
    const body = JSON.parse(server.requests[0]!.body);
    expect(Object.keys(body)).toEqual(['text']);
    expect(body.text.split('\n')).toEqual([
      `*${success.summary}*`,
      '• *Job:* laptop-system',
      '• *Host:* host1',
      '• *Operation:* backup',
      '• *Result:* succeeded',
      '• *Time:* 2026-05-01T02:00:00.000Z',
      '• *Duration:* 5.0 s',
      `• *Snapshot:* ${success.snapshot!.id}`,
      '• *Size:* 7.6 MiB',
      '• *Read:* 1.9 MiB',
      '• *Added:* 293.0 KiB',
    ]);
  });

  it('discord: content and an embed whose fields are the facts, red on failure', async () => {
    await send({ format: 'discord' });
    const body = JSON.parse(server.requests[0]!.body);
    expect(body.content).toBe(failure.summary);
    expect(body.embeds).toHaveLength(1);
    expect(body.embeds[0]).toMatchObject({ title: 'laptop-system: backup failed', color: 0xe74c3c, timestamp: failure.time });
    expect(body.embeds[0].fields).toContainEqual({ name: 'Error', value: `${failure.error!.message} (CAIRN_SOURCE, exit code 1)`, inline: false });
    expect(body.embeds[0].fields).toContainEqual({ name: 'Host', value: 'host1', inline: true });
  });

  it('a template fills placeholders, JSON-escaped for a JSON format and as they are for text', async () => {
    await send({ template: '{"title": "cairn {{job}}", "msg": "{{ error }}", "exit": {{exitCode}}, "event": "{{event}}"}' });
    expect(server.requests[0]!.headers['content-type']).toBe('application/json');
    expect(JSON.parse(server.requests[0]!.body)).toEqual({ title: 'cairn laptop-system', msg: failure.error!.message, exit: 1, event: 'failure' });
    await send({ format: 'text', template: '{{job}} on {{host}}: {{result}}, "{{snapshot}}" +{{bytesAdded}} B' }, success);
    expect(server.requests[1]!.body).toBe(`laptop-system on host1: succeeded, "${success.snapshot!.id}" +300000 B`);
  });

  it('refuses a template placeholder it does not know, naming the ones it knows', () => {
    expect(() => fillTemplate('{{jobname}}', failure, false)).toThrow(/uses \{\{jobname\}\}, which is not one of \{\{job\}\}, \{\{host\}\}/);
  });

  it('an answer other than 2xx is an error naming the status, and not the URL (it may hold a token)', async () => {
    server.status = 429;
    const error = await send({ url: server.url + '/hook?token=tk_secret123' }).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toBe('The webhook answered HTTP 429 Too Many Requests: refused with 429');
    expect((error as Error).message).not.toContain('tk_secret123');
  });

  it('stops waiting when the signal is aborted', async () => {
    server.silent = true;
    const controller = new AbortController();
    const sending = send({}, failure, controller.signal);
    await server.waitFor(1);
    controller.abort(new Error('time is up'));
    await expect(sending).rejects.toThrow('time is up');
  });
});
