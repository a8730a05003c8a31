import { hostname } from 'node:os';
import { inject, injectable, optional } from '../vendor.js';
import { PluginError } from '../errors.js';
import { Clock, Logger, NotifierRegistry } from '../services.js';
import { PluginHost } from '../plugins/plugin-host.js';
import { SecretReader } from '../job/secrets.js';
import type { LoadedJob } from '../job/job-loader.js';
import { formatBytes } from '../cli/format.js';
import { notificationResult, type Notification, type Notifier, type NotifierFactory, type NotifierSettings, type NotifyEvent } from '../notify.js';

/** What the caller of `Notifications.notify` gives; the host, the time, the warnings and the summary are filled in when absent. */
export type NotificationInput = Omit<Notification, 'host' | 'time' | 'summary' | 'warnings'> & Partial<Pick<Notification, 'host' | 'time' | 'summary' | 'warnings'>>;

/** How hard a notification is pushed through: each attempt's time limit, and the retries after a failed one. */
export const NotificationDelivery = Symbol.for('cairn.NotificationDelivery');
export interface NotificationDelivery {
  timeoutMs: number;
  retries: number;
  /** The wait before the first retry; it doubles for each further one. */
  backoffMs: number;
}

const DEFAULT_DELIVERY: NotificationDelivery = { timeoutMs: 30_000, retries: 2, backoffMs: 1_000 };

/**
 * A `start` notification is sent before the backup begins, which waits for it: it gets one
 * attempt of at most this long, so that a notifier that is down delays the backup by seconds,
 * not by the minute and a half of retries a result gets. (A health check misses one start ping.)
 */
const START_TIMEOUT_MS = 10_000;

/** Events an entry of a job's `notify` list is sent when it has no `on`. */
export const DEFAULT_NOTIFY_EVENTS: readonly NotifyEvent[] = ['failure'];

/**
 * Sends a job's notifications to every entry of its `notify` list that wants the event, at
 * once. It never throws: a failed delivery (after its retries) is logged as an error naming
 * the notifier and the job, and whatever the run's result was stands.
 */
@injectable()
export class Notifications {
  readonly #delivery: NotificationDelivery;

  constructor(
    @inject(PluginHost) private readonly plugins: PluginHost,
    @inject(NotifierRegistry) private readonly notifiers: NotifierRegistry,
    @inject(SecretReader) private readonly secrets: SecretReader,
    @inject(Logger) private readonly logger: Logger,
    @inject(Clock) private readonly clock: Clock,
    @inject(NotificationDelivery) @optional() delivery?: NotificationDelivery,
  ) {
    this.#delivery = delivery ?? DEFAULT_DELIVERY;
  }

  async notify(job: LoadedJob, input: NotificationInput): Promise<void> {
    const entries = job.config.notify ?? [];
    if (entries.length === 0) return;
    try {
      const notification = this.#complete(input);
      await Promise.all(entries.map((entry, index) => this.#deliver(job, entry, index, notification)));
    } catch (err) {
      // #deliver catches what a notifier throws; this is for a bug here, which must not fail the run either.
      this.logger.error(`Notifying about job ${job.info.name} failed: ${(err as Error)?.message ?? String(err)}`);
    }
  }

  #complete(input: NotificationInput): Notification {
    const host = input.host ?? hostname();
    const warnings = input.warnings ?? [];
    const complete = { ...input, host, warnings, time: input.time ?? this.clock.now().toISOString() };
    return { ...complete, summary: input.summary ?? summarizeNotification(complete) };
  }

  async #deliver(job: LoadedJob, entry: NotifierSettings, index: number, notification: Notification): Promise<void> {
    const label = entry.name ? `${entry.name} (notify[${index}], ${entry.type})` : `${entry.type} (notify[${index}])`;
    try {
      // An entry that names its events is skipped without loading its plugin.
      if (entry.on && !entry.on.includes(notification.event)) return;
      const factory = await this.#factory(entry.type);
      if (!(entry.on ?? factory.defaultEvents ?? DEFAULT_NOTIFY_EVENTS).includes(notification.event)) return;
      const notifier = factory.create(entry, { baseDir: job.baseDir, readSecret: (ref, what) => this.secrets.read(ref, what, job.baseDir) });
      await this.#sendWithRetries(notifier, notification, label, this.#deliveryOf(notification.event));
      this.logger.info(`notified ${label} of the ${notification.operation} ${notificationResult(notification)}`);
    } catch (err) {
      this.logger.error(`Notifying ${label} of job ${job.info.name} (${notification.operation} ${notification.event}) failed: ${(err as Error)?.message ?? String(err)}`);
    }
  }

  async #factory(type: string): Promise<NotifierFactory> {
    await this.plugins.activate(`onNotifier:${type}`);
    const factory = this.notifiers.get(type);
    if (!factory) throw new PluginError(undefined, `No enabled plugin registered notifier type "${type}"`);
    return factory;
  }

  #deliveryOf(event: NotifyEvent): NotificationDelivery {
    return event === 'start' ? { ...this.#delivery, retries: 0, timeoutMs: Math.min(this.#delivery.timeoutMs, START_TIMEOUT_MS) } : this.#delivery;
  }

  async #sendWithRetries(notifier: Notifier, notification: Notification, label: string, delivery: NotificationDelivery): Promise<void> {
    const { retries, backoffMs } = delivery;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#sendOnce(notifier, notification, delivery.timeoutMs);
      } catch (err) {
        if (attempt >= retries) throw err;
        const wait = backoffMs * 2 ** attempt;
        this.logger.warn(`Notifying ${label} failed (${(err as Error)?.message ?? String(err)}); trying again in ${wait} ms`);
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
  }

  /** One attempt, given up after the time limit (the notifier is told through the signal). */
  async #sendOnce(notifier: Notifier, notification: Notification, timeoutMs: number): Promise<void> {
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new Error(`no answer within ${timeoutMs / 1000} s`);
        // Rejected first, so that the race reports the time limit, not the notifier's answer to the abort.
        reject(error);
        controller.abort(error);
      }, timeoutMs);
    });
    try {
      await Promise.race([notifier.send(notification, { signal: controller.signal }), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

const OPERATION_WORDS: Record<Notification['operation'], string> = { backup: 'Backup', prune: 'Prune', check: 'Check', forget: 'Forget' };

/** One sentence for people: "Backup of laptop on host1 failed: …". */
export function summarizeNotification(n: Omit<Notification, 'summary'>): string {
  const head = `${OPERATION_WORDS[n.operation]} of ${n.job} on ${n.host} ${notificationResult(n)}`;
  switch (n.event) {
    case 'start':
      return `${head}.`;
    case 'failure':
      return `${head}: ${n.error?.message ?? 'unknown error'}`;
    case 'warning':
      return `${head}${n.snapshot ? ` (snapshot ${n.snapshot.id.slice(0, 12)})` : ''}: ${n.warnings.join('; ') || n.error?.message || 'see the log'}`;
    case 'success':
      return n.snapshot ? `${head}: snapshot ${n.snapshot.id.slice(0, 12)}, ${formatBytes(n.snapshot.bytesAdded)} added.` : `${head}.`;
  }
}
