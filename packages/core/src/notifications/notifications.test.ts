import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { ContainerModule } from '../vendor.js';
import { createCoreContainer } from '../create-core.js';
import { CairnError, HookCommandError, HookTapError } from '../errors.js';
import { NotifierRegistry, type Logger } from '../services.js';
import type { LoadedJob } from '../job/job-loader.js';
import type { Notification, NotifierFactory, NotifierSettings } from '../notify.js';
import { NotificationDelivery, Notifications, summarizeNotification } from './notifications.js';
import { describeError } from './backup-notifications.js';

/*
 * The Notifications service with notifiers registered straight into the core's registry (no
 * plugin): which entries get which event, what a notification holds, and that delivery
 * failures are retried, time out, are logged and never reach the caller.
 */

interface Sent {
  entry: string;
  notification: Notification;
}

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const add = (level: string) => (message: string) => lines.push(`${level}: ${message}`);
  return { lines, debug: add('debug'), info: add('info'), warn: add('warn'), error: add('error') };
}

/** A core with notifier types that record what they get, or fail in chosen ways; fast retries. */
function setup() {
  const logger = recordingLogger();
  const delivery: NotificationDelivery = { timeoutMs: 300, retries: 2, backoffMs: 5 };
  const container = createCoreContainer({
    pluginsFile: '/dev/null',
    logger,
    env: { HOOK_TOKEN: 'secret-token' },
    cwd: '/',
    modules: [new ContainerModule(({ bind }) => void bind(NotificationDelivery).toConstantValue(delivery))],
  });
  const sent: Sent[] = [];
  const attempts = new Map<string, number>();
  const count = (entry: NotifierSettings) => {
    const key = String(entry.name ?? entry.type);
    attempts.set(key, (attempts.get(key) ?? 0) + 1);
    return attempts.get(key)!;
  };
  const registry = container.get<NotifierRegistry>(NotifierRegistry);
  const recorder: NotifierFactory = {
    create: (entry) => ({ send: async (notification) => void sent.push({ entry: String(entry.name ?? entry.type), notification }) }),
  };
  registry.register('recorder', recorder);
  registry.register('everything', { ...recorder, defaultEvents: ['start', 'success', 'warning', 'failure'] });
  registry.register('flaky', {
    create: (entry) => ({
      send: async (notification) => {
        if (count(entry) <= Number(entry.failures)) throw new Error('503 Service Unavailable');
        sent.push({ entry: String(entry.name ?? entry.type), notification });
      },
    }),
  });
  registry.register('hanging', {
    create: (entry) => ({
      send: (_notification, options) =>
        new Promise((_resolve, reject) => {
          count(entry);
          options?.signal?.addEventListener('abort', () => reject(new Error('aborted by the core')));
        }),
    }),
  });
  registry.register('secretive', {
    create: (entry, context) => ({
      send: async (notification) => {
        const token = await context.readSecret(entry.token as { env: string }, 'webhook token');
        sent.push({ entry: `secretive:${token}`, notification });
      },
    }),
  });
  return { notifications: container.get(Notifications), sent, attempts, logger };
}

function jobWith(notify: NotifierSettings[]): LoadedJob {
  const config = { name: 'laptop', notify } as unknown as LoadedJob['config'];
  return { info: { name: 'laptop', file: '/jobs/laptop.json', job: config as unknown as Record<string, unknown> }, config, baseDir: '/jobs' };
}

const failure = { event: 'failure', job: 'laptop', operation: 'backup', error: { message: 'the source /dev/sdz does not exist', code: 'CAIRN_SOURCE', exitCode: 1 } } as const;
const success = { event: 'success', job: 'laptop', operation: 'backup', snapshot: { id: 'ab'.repeat(32), bytesRead: 4_000_000, bytesAdded: 1_500_000, size: 8_000_000 } } as const;

describe('Notifications', () => {
  it('sends an event only to the entries that want it: failure by default, the notifier\'s own defaults, or the entry\'s `on`', async () => {
    const { notifications, sent } = setup();
    const job = jobWith([
      { type: 'recorder', name: 'default' },
      { type: 'everything', name: 'notifier-default' },
      { type: 'recorder', name: 'success-only', on: ['success'] },
      { type: 'recorder', name: 'both', on: ['success', 'failure'] },
    ]);
    await notifications.notify(job, failure);
    expect(sent.map((s) => s.entry).sort()).toEqual(['both', 'default', 'notifier-default']);
    sent.length = 0;
    await notifications.notify(job, success);
    expect(sent.map((s) => s.entry).sort()).toEqual(['both', 'notifier-default', 'success-only']);
    sent.length = 0;
    await notifications.notify(job, { event: 'start', job: 'laptop', operation: 'backup' });
    expect(sent.map((s) => s.entry)).toEqual(['notifier-default']);
  });

  it('fills in the host, the time, the warnings and a one-sentence summary', async () => {
    const { notifications, sent } = setup();
    await notifications.notify(jobWith([{ type: 'recorder', on: ['failure', 'success'] }]), failure);
    const notification = sent[0]!.notification;
    expect(notification).toEqual({ ...failure, host: hostname(), time: expect.any(String), warnings: [], summary: `Backup of laptop on ${hostname()} failed: the source /dev/sdz does not exist` });
    expect(Date.now() - Date.parse(notification.time)).toBeGreaterThanOrEqual(0);
    await notifications.notify(jobWith([{ type: 'recorder', on: ['success'] }]), { ...success, host: 'nas', time: '2026-05-01T02:00:00.000Z' });
    expect(sent[1]!.notification).toMatchObject({ host: 'nas', time: '2026-05-01T02:00:00.000Z', summary: `Backup of laptop on nas succeeded: snapshot ${'ab'.repeat(6)}, 1.4 MiB added.` });
  });

  it('retries a failed delivery twice, with a warning each time, and then it counts as delivered', async () => {
    const { notifications, sent, attempts, logger } = setup();
    await notifications.notify(jobWith([{ type: 'flaky', name: 'ntfy', failures: 2 }]), failure);
    expect(attempts.get('ntfy')).toBe(3);
    expect(sent.map((s) => s.entry)).toEqual(['ntfy']);
    expect(logger.lines.filter((l) => l.startsWith('warn:'))).toEqual([
      'warn: Notifying ntfy (notify[0], flaky) failed (503 Service Unavailable); trying again in 5 ms',
      'warn: Notifying ntfy (notify[0], flaky) failed (503 Service Unavailable); trying again in 10 ms',
    ]);
    expect(logger.lines.filter((l) => l.startsWith('error:'))).toEqual([]);
  });

  it('never throws: a notifier that keeps failing is logged as an error naming it and the job, and the others still get theirs', async () => {
    const { notifications, sent, attempts, logger } = setup();
    const job = jobWith([{ type: 'flaky', name: 'down', failures: 99 }, { type: 'recorder' }, { type: 'no-such-type' }]);
    await expect(notifications.notify(job, failure)).resolves.toBeUndefined();
    expect(attempts.get('down')).toBe(3);
    expect(sent.map((s) => s.entry)).toEqual(['recorder']);
    // Sent concurrently: the quick failure is logged first.
    const errors = logger.lines.filter((l) => l.startsWith('error:'));
    expect(errors.sort()).toEqual([
      'error: Notifying down (notify[0], flaky) of job laptop (backup failure) failed: 503 Service Unavailable',
      'error: Notifying no-such-type (notify[2]) of job laptop (backup failure) failed: No enabled plugin registered notifier type "no-such-type"',
    ]);
  });

  it('gives up on an attempt after the time limit, aborting the notifier\'s signal, and retries', async () => {
    const { notifications, attempts, logger } = setup();
    await notifications.notify(jobWith([{ type: 'hanging' }]), failure);
    expect(attempts.get('hanging')).toBe(3);
    expect(logger.lines.filter((l) => l.startsWith('error:'))).toEqual(['error: Notifying hanging (notify[0]) of job laptop (backup failure) failed: no answer within 0.3 s']);
  });

  it('gives a start notification one attempt, so that a notifier that is down does not hold the backup back', async () => {
    const { notifications, attempts, logger } = setup();
    await notifications.notify(jobWith([{ type: 'flaky', name: 'checks', failures: 1, on: ['start'] }, { type: 'hanging', on: ['start'] }]), { ...success, event: 'start', snapshot: undefined });
    expect(attempts.get('checks')).toBe(1);
    expect(attempts.get('hanging')).toBe(1);
    expect(logger.lines.filter((l) => l.startsWith('warn:'))).toEqual([]);
    expect(logger.lines.filter((l) => l.startsWith('error:')).sort()).toEqual([
      'error: Notifying checks (notify[0], flaky) of job laptop (backup start) failed: 503 Service Unavailable',
      'error: Notifying hanging (notify[1]) of job laptop (backup start) failed: no answer within 0.3 s',
    ]);
  });

  it('lets a notifier read its secrets from the environment the core was given', async () => {
    const { notifications, sent } = setup();
    await notifications.notify(jobWith([{ type: 'secretive', token: { env: 'HOOK_TOKEN' } }]), failure);
    expect(sent.map((s) => s.entry)).toEqual(['secretive:secret-token']);
  });

  it('sends nothing, and loads nothing, for a job without a notify list', async () => {
    const { notifications, sent, logger } = setup();
    const job = jobWith([]);
    delete job.config.notify;
    await notifications.notify(job, failure);
    expect(sent).toEqual([]);
    expect(logger.lines).toEqual([]);
  });
});

describe('summaries and errors', () => {
  const base = { job: 'laptop', host: 'host1', operation: 'backup', time: '2026-05-01T02:00:00.000Z', warnings: [] } as const;

  it('says what happened in one sentence', () => {
    expect(summarizeNotification({ ...base, event: 'start' })).toBe('Backup of laptop on host1 started.');
    expect(summarizeNotification({ ...base, operation: 'prune', event: 'failure', error: { message: 'locked' } })).toBe('Prune of laptop on host1 failed: locked');
    expect(summarizeNotification({ ...base, event: 'warning', warnings: ['JobCommands (afterRun): fsfreeze failed'] })).toBe('Backup of laptop on host1 succeeded with warnings: JobCommands (afterRun): fsfreeze failed');
  });

  it('reports an error with its code and the exit code the CLI gives it', () => {
    const hook = new HookTapError('beforeRun', 'JobCommands', new HookCommandError('The before command `false` failed (exit code 1)'));
    expect(describeError(hook)).toEqual({ message: 'JobCommands (beforeRun): The before command `false` failed (exit code 1)', code: 'CAIRN_HOOK_TAP', exitCode: 1 });
    expect(describeError(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }))).toEqual({ message: 'ENOSPC: no space left on device', code: 'ENOSPC', exitCode: 1 });
    expect(describeError(new (class extends CairnError { override readonly exitCode = 11 as const; override readonly code = 'CAIRN_LOCKED'; })('locked'))).toEqual({ message: 'locked', code: 'CAIRN_LOCKED', exitCode: 11 });
  });
});
