import {
  formatNotificationFacts,
  readSecretSetting,
  type Notification,
  type Notifier,
  type NotifierCreateContext,
  type NotifierFactory,
  type NotifierSettings,
  type NotifyEvent,
  type SecretSetting,
} from '@cairn/core';

/** The job file's healthchecks entry (see schema/healthchecks.schema.json). */
export interface HealthchecksSettings extends NotifierSettings {
  type: 'healthchecks';
  url: SecretSetting;
  /** What a warning pings. Default: success. */
  warning?: 'success' | 'fail';
  method?: 'GET' | 'POST';
}

/** Healthchecks.io keeps at most 100 kB of a ping's body. */
const MAX_BODY = 100_000;

export const healthchecksNotifierFactory: NotifierFactory = {
  // A check learns that runs end, and how long they take, only when it gets every ping.
  defaultEvents: ['start', 'success', 'warning', 'failure'],
  create: (settings, context) => new HealthchecksNotifier(settings as HealthchecksSettings, context),
};

/** The ping URL's suffix for an event: `/start`, nothing (success) or `/fail`. */
export function pingSuffix(event: NotifyEvent, warning: 'success' | 'fail' = 'success'): '' | '/start' | '/fail' {
  if (event === 'start') return '/start';
  if (event === 'failure' || (event === 'warning' && warning === 'fail')) return '/fail';
  return '';
}

/** Pings a healthchecks.io check; with POST the body (the summary and the facts) shows in the check's log. */
export class HealthchecksNotifier implements Notifier {
  constructor(
    private readonly settings: HealthchecksSettings,
    private readonly context: NotifierCreateContext,
  ) {}

  async send(notification: Notification, options: { signal?: AbortSignal } = {}): Promise<void> {
    const base = (await readSecretSetting(this.settings.url, this.context, 'health check ping URL')).replace(/\/+$/, '');
    const url = base + pingSuffix(notification.event, this.settings.warning);
    const method = this.settings.method ?? 'POST';
    const body = method === 'POST' ? `${notification.summary}\n\n${formatNotificationFacts(notification)}\n`.slice(0, MAX_BODY) : undefined;
    const response = await fetch(url, {
      method,
      ...(body !== undefined && { body, headers: { 'content-type': 'text/plain; charset=utf-8' } }),
      ...(options.signal && { signal: options.signal }),
    });
    const answer = await response.text().catch(() => '');
    // The URL is left out of messages: whoever has it can ping the check.
    if (!response.ok) throw new Error(`The health check answered HTTP ${response.status} ${response.statusText}${answer ? `: ${answer.slice(0, 200)}` : ''}`);
  }
}
