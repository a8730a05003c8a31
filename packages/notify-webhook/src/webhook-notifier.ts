import {
  formatNotificationFacts,
  notificationFacts,
  notificationResult,
  readSecretSetting,
  type Notification,
  type Notifier,
  type NotifierCreateContext,
  type NotifierFactory,
  type NotifierSettings,
  type SecretSetting,
} from '@cairn/core';

export type WebhookFormat = 'json' | 'text' | 'ntfy' | 'slack' | 'discord';

/** The job file's webhook entry (see schema/webhook.schema.json). */
export interface WebhookSettings extends NotifierSettings {
  type: 'webhook';
  url: SecretSetting;
  method?: 'POST' | 'PUT';
  format?: WebhookFormat;
  template?: string;
  headers?: Record<string, SecretSetting>;
}

/** What goes over the wire, before the user's own headers. */
export interface WebhookRequest {
  contentType: string;
  headers: Record<string, string>;
  body: string;
}

const JSON_TYPE = 'application/json';
const TEXT_TYPE = 'text/plain; charset=utf-8';
/** How much of an error answer's body a message quotes. */
const ANSWER_EXCERPT = 200;

export const webhookNotifierFactory: NotifierFactory = {
  create: (settings, context) => new WebhookNotifier(settings as WebhookSettings, context),
};

/** Sends a notification as one HTTP request; an answer other than 2xx is a failed delivery. */
export class WebhookNotifier implements Notifier {
  constructor(
    private readonly settings: WebhookSettings,
    private readonly context: NotifierCreateContext,
  ) {}

  async send(notification: Notification, options: { signal?: AbortSignal } = {}): Promise<void> {
    const url = await readSecretSetting(this.settings.url, this.context, 'webhook URL');
    const request = renderRequest(this.settings, notification);
    const headers = { 'content-type': request.contentType, ...request.headers, ...(await this.#ownHeaders()) };
    const response = await fetch(url, { method: this.settings.method ?? 'POST', headers, body: request.body, ...(options.signal && { signal: options.signal }) });
    const answer = await response.text().catch(() => '');
    // The URL is left out of messages: it may hold a token.
    if (!response.ok) throw new Error(`The webhook answered HTTP ${response.status} ${response.statusText}${answer ? `: ${answer.slice(0, ANSWER_EXCERPT)}` : ''}`);
  }

  async #ownHeaders(): Promise<Record<string, string>> {
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(this.settings.headers ?? {})) {
      headers[name.toLowerCase()] = await readSecretSetting(value, this.context, `webhook header ${name}`);
    }
    return headers;
  }
}

/** The request for a notification in the entry's format, its body from the template when there is one. */
export function renderRequest(settings: Pick<WebhookSettings, 'format' | 'template'>, notification: Notification): WebhookRequest {
  const request = FORMATS[settings.format ?? 'json'](notification);
  if (settings.template === undefined) return request;
  return { ...request, body: fillTemplate(settings.template, notification, request.contentType === JSON_TYPE) };
}

const FORMATS: Record<WebhookFormat, (n: Notification) => WebhookRequest> = {
  json: (n) => ({ contentType: JSON_TYPE, headers: {}, body: JSON.stringify(n) }),
  text: (n) => ({ contentType: TEXT_TYPE, headers: {}, body: `${n.summary}\n\n${formatNotificationFacts(n)}\n` }),
  ntfy: ntfyRequest,
  slack: (n) => ({ contentType: JSON_TYPE, headers: {}, body: JSON.stringify({ text: slackText(n) }) }),
  discord: (n) => ({ contentType: JSON_TYPE, headers: {}, body: JSON.stringify(discordMessage(n)) }),
};

const NTFY_PRIORITY: Record<Notification['event'], string> = { start: 'low', success: 'default', warning: 'default', failure: 'high' };
/** ntfy shows tags that are emoji short codes as emoji. */
const NTFY_TAG: Record<Notification['event'], string> = { start: 'hourglass_flowing_sand', success: 'white_check_mark', warning: 'warning', failure: 'rotating_light' };

/** ntfy.sh: the message is the plain-text body; title, priority and tags go in headers (which must be ASCII). */
function ntfyRequest(n: Notification): WebhookRequest {
  const title = `cairn: ${n.job} ${n.operation} ${notificationResult(n)} on ${n.host}`;
  return {
    contentType: TEXT_TYPE,
    headers: { title: asciiHeader(title), priority: NTFY_PRIORITY[n.event], tags: [NTFY_TAG[n.event], 'cairn', asciiHeader(n.job)].join(',') },
    body: n.summary,
  };
}

function asciiHeader(value: string): string {
  return value.replace(/[^\x20-\x7e]/g, '?');
}

/** Slack's mrkdwn: the summary in bold, then the facts as a list. */
function slackText(n: Notification): string {
  const facts = notificationFacts(n).map(([label, value]) => `• *${label}:* ${slackEscape(value)}`);
  return [`*${slackEscape(n.summary)}*`, ...facts].join('\n');
}

function slackEscape(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

const DISCORD_COLOR: Record<Notification['event'], number> = { start: 0x3498db, success: 0x2ecc71, warning: 0xf1c40f, failure: 0xe74c3c };
/** Discord's limits: 2000 characters of content, 256 of a title, 1024 of a field value, 25 fields. */
const DISCORD_LIMITS = { content: 2000, title: 256, field: 1024, fields: 25 };

function discordMessage(n: Notification): object {
  const fields = notificationFacts(n)
    .slice(0, DISCORD_LIMITS.fields)
    .map(([name, value]) => ({ name, value: clip(value, DISCORD_LIMITS.field), inline: value.length <= 40 }));
  return {
    content: clip(n.summary, DISCORD_LIMITS.content),
    embeds: [{ title: clip(`${n.job}: ${n.operation} ${notificationResult(n)}`, DISCORD_LIMITS.title), color: DISCORD_COLOR[n.event], timestamp: n.time, fields }],
  };
}

function clip(text: string, limit: number): string {
  return text.length <= limit ? text : `${text.slice(0, limit - 1)}…`;
}

/** The values a template's `{{name}}` placeholders stand for (empty when the notification lacks the fact). */
function templateValues(n: Notification): Record<string, string> {
  return {
    job: n.job,
    host: n.host,
    event: n.event,
    result: notificationResult(n),
    operation: n.operation,
    time: n.time,
    duration: n.durationMs !== undefined ? `${(n.durationMs / 1000).toFixed(1)} s` : '',
    durationMs: n.durationMs !== undefined ? String(n.durationMs) : '',
    error: n.error?.message ?? '',
    errorCode: n.error?.code ?? '',
    exitCode: n.error?.exitCode !== undefined ? String(n.error.exitCode) : '',
    snapshot: n.snapshot?.id ?? '',
    bytesRead: n.snapshot ? String(n.snapshot.bytesRead) : '',
    bytesAdded: n.snapshot ? String(n.snapshot.bytesAdded) : '',
    size: n.snapshot ? String(n.snapshot.size) : '',
    warnings: n.warnings.join('; '),
    summary: n.summary,
    facts: formatNotificationFacts(n),
  };
}

/** The names a template may use. */
export const TEMPLATE_PLACEHOLDERS = Object.keys(templateValues({ event: 'start', job: '', host: '', operation: 'backup', time: '', warnings: [], summary: '' }));

/** Replaces `{{name}}` (spaces allowed inside the braces); values are JSON-escaped for a JSON body. An unknown name is an error. */
export function fillTemplate(template: string, notification: Notification, json: boolean): string {
  const values = templateValues(notification);
  return template.replace(/\{\{\s*([A-Za-z]+)\s*\}\}/g, (_match, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`The webhook template uses {{${name}}}, which is not one of ${TEMPLATE_PLACEHOLDERS.map((p) => `{{${p}}}`).join(', ')}`);
    return json ? JSON.stringify(value).slice(1, -1) : value;
  });
}
