import type { SecretRef } from './target.js';
import { formatBytes } from './cli/format.js';

/*
 * Notifications: what a job's `notify` entries are sent, and the contract of the plugins
 * that deliver them (the `notifiers` contribution point). The core decides when to notify
 * and to whom; a notifier only turns a Notification into a request to its service.
 */

/** When a notification is sent: a run started, succeeded, succeeded with warnings, or failed. */
export type NotifyEvent = 'start' | 'success' | 'warning' | 'failure';

export const NOTIFY_EVENTS: readonly NotifyEvent[] = ['start', 'success', 'warning', 'failure'];

/** What a notifier receives. */
export interface Notification {
  event: NotifyEvent;
  /** The job's name. */
  job: string;
  /** The host the run happened on. */
  host: string;
  operation: 'backup' | 'prune' | 'check' | 'forget';
  /** When the event happened (ISO 8601). */
  time: string;
  durationMs?: number;
  /** The saved snapshot (success and warning of a backup). */
  snapshot?: { id: string; bytesRead: number; bytesAdded: number; size: number };
  error?: { message: string; code?: string; exitCode?: number };
  warnings: string[];
  /** One human sentence, e.g. "Backup of laptop on host1 failed: …". */
  summary: string;
}

/** One entry of a job's `notify` list, as the merged schema validated it. */
export interface NotifierSettings {
  type: string;
  /** Events this entry is sent; default: the notifier's `defaultEvents`, else `["failure"]`. */
  on?: NotifyEvent[];
  /** A label for logs; default: the type. */
  name?: string;
  [setting: string]: unknown;
}

export interface NotifierCreateContext {
  /** The job file's folder: relative paths in the job are relative to it. */
  baseDir: string;
  /** Reads a secret given as `{ env }`, `{ file }` or `{ command }` in the job file. */
  readSecret(ref: SecretRef, what: string): Promise<string>;
}

/**
 * A notifier delivers one notification; a rejection is a failed delivery (the core retries
 * and logs it). The core gives up on an attempt after its time limit and aborts `signal`
 * then: a notifier should stop its request.
 */
export interface Notifier {
  send(notification: Notification, options?: { signal?: AbortSignal }): Promise<void>;
}

/** What a plugin registers for a notifier type (`ctx.notifiers.register('webhook', factory)`). */
export interface NotifierFactory {
  /** Events an entry without `on` is sent. Default: `["failure"]`. */
  defaultEvents?: NotifyEvent[];
  create(settings: NotifierSettings, context: NotifierCreateContext): Notifier;
}

/** A setting that may be written in the job file as it is, or as a secret ref (a URL with a token, a password). */
export type SecretSetting = string | SecretRef;

/** The value of a setting that is a plain string or a secret ref. */
export function readSecretSetting(value: SecretSetting, context: NotifierCreateContext, what: string): Promise<string> {
  return typeof value === 'string' ? Promise.resolve(value) : context.readSecret(value, what);
}

const RESULT_WORDS: Record<NotifyEvent, string> = {
  start: 'started',
  success: 'succeeded',
  warning: 'succeeded with warnings',
  failure: 'failed',
};

/** The event in words, as a result: `started`, `succeeded`, `succeeded with warnings`, `failed`. */
export function notificationResult(notification: Pick<Notification, 'event'>): string {
  return RESULT_WORDS[notification.event];
}

/** The facts of a notification as labelled lines (job, host, result, …), for text bodies; absent facts are left out. */
export function notificationFacts(notification: Notification): Array<[label: string, value: string]> {
  const n = notification;
  const facts: Array<[string, string]> = [
    ['Job', n.job],
    ['Host', n.host],
    ['Operation', n.operation],
    ['Result', notificationResult(n)],
    ['Time', n.time],
  ];
  if (n.durationMs !== undefined) facts.push(['Duration', `${(n.durationMs / 1000).toFixed(1)} s`]);
  if (n.snapshot) {
    facts.push(['Snapshot', n.snapshot.id]);
    facts.push(['Size', formatBytes(n.snapshot.size)], ['Read', formatBytes(n.snapshot.bytesRead)], ['Added', formatBytes(n.snapshot.bytesAdded)]);
  }
  if (n.error) {
    const details = [n.error.code, n.error.exitCode !== undefined ? `exit code ${n.error.exitCode}` : undefined].filter(Boolean);
    facts.push(['Error', details.length > 0 ? `${n.error.message} (${details.join(', ')})` : n.error.message]);
  }
  for (const warning of n.warnings) facts.push(['Warning', warning]);
  return facts;
}

/** The facts as `Label: value` lines, for plain-text bodies. */
export function formatNotificationFacts(notification: Notification): string {
  return notificationFacts(notification)
    .map(([label, value]) => `${label}: ${value}`)
    .join('\n');
}
