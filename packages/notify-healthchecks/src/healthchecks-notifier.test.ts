import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Notification, NotifierCreateContext, NotifierFactory, PluginContext } from '@cairn/core';
import { createTestPluginContext, startHttpCapture, type HttpCapture } from '@cairn/core/testing';
import { activate } from './index.js';
import type { HealthchecksSettings } from './healthchecks-notifier.js';

/* The healthchecks notifier against a real HTTP server on 127.0.0.1 standing in for hc-ping.com. */

const PLUGIN_FOLDER = fileURLToPath(new URL('..', import.meta.url));
const CHECK = '/ping/0f2b9a64-3c1e-4c8e-9a55-0d6c1e2f7a10';

const context: NotifierCreateContext = {
  baseDir: '/',
  readSecret: async (ref) => {
    if ('env' in ref && ref.env === 'HC_URL') return process.env.TEST_HC_URL!;
    throw new Error(`no secret for ${JSON.stringify(ref)}`);
  },
};

function notification(event: Notification['event'], extra: Partial<Notification> = {}): Notification {
  return { event, job: 'nas', host: 'host1', operation: 'backup', time: '2026-05-01T02:00:00.000Z', warnings: [], summary: `Backup of nas on host1 ${event}`, ...extra };
}

describe('healthchecks notifier', () => {
  let server: HttpCapture;
  let plugin: PluginContext;
  let factory: NotifierFactory;
  beforeEach(async () => {
    server = await startHttpCapture();
    plugin = await createTestPluginContext(PLUGIN_FOLDER);
    await activate(plugin);
    factory = plugin.notifiers.get('healthchecks')!;
  });
  afterEach(async () => {
    await plugin.subscriptions.dispose();
    await server.close();
  });

  const ping = (event: Notification['event'], settings: Partial<HealthchecksSettings> = {}, extra: Partial<Notification> = {}) =>
    factory.create({ type: 'healthchecks', url: server.url + CHECK, ...settings }, context).send(notification(event, extra));

  it('wants every event by default: a check must see runs start and end', () => {
    expect(factory.defaultEvents).toEqual(['start', 'success', 'warning', 'failure']);
  });

  it('pings <url>/start, <url> and <url>/fail, POSTing the summary and the facts', async () => {
    await ping('start');
    await ping('success', {}, { snapshot: { id: 'ef'.repeat(32), bytesRead: 10, bytesAdded: 5, size: 20 } });
    await ping('failure', {}, { error: { message: 'The source disk.img does not exist', code: 'CAIRN_SOURCE', exitCode: 1 } });
    expect(server.requests.map((r) => `${r.method} ${r.url}`)).toEqual([`POST ${CHECK}/start`, `POST ${CHECK}`, `POST ${CHECK}/fail`]);
    expect(server.requests[1]!.body).toContain(`Snapshot: ${'ef'.repeat(32)}`);
    expect(server.requests[2]!.body.split('\n')[0]).toBe('Backup of nas on host1 failure');
    expect(server.requests[2]!.body).toContain('Error: The source disk.img does not exist (CAIRN_SOURCE, exit code 1)');
  });

  it('a warning pings success unless the entry says fail; GET sends no body; a trailing slash is dropped', async () => {
    await ping('warning', { url: server.url + CHECK + '/' });
    await ping('warning', { warning: 'fail', method: 'GET' });
    expect(server.requests.map((r) => `${r.method} ${r.url}`)).toEqual([`POST ${CHECK}`, `GET ${CHECK}/fail`]);
    expect(server.requests[1]!.body).toBe('');
  });

  it('takes the ping URL from a secret ref', async () => {
    process.env.TEST_HC_URL = server.url + '/secret-check';
    try {
      await ping('start', { url: { env: 'HC_URL' } });
    } finally {
      delete process.env.TEST_HC_URL;
    }
    expect(server.requests.map((r) => r.url)).toEqual(['/secret-check/start']);
  });

  it('an answer other than 2xx is an error naming the status, not the URL', async () => {
    server.status = 404;
    await expect(ping('success')).rejects.toThrow(/^The health check answered HTTP 404 Not Found: refused with 404$/);
  });
});
