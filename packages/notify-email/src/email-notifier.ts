import {
  formatNotificationFacts,
  notificationResult,
  type Notification,
  type Notifier,
  type NotifierCreateContext,
  type NotifierFactory,
  type NotifierSettings,
  type SecretRef,
} from '@cairn/core';
import type { SendMailOptions, TransportOptions } from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport';

/** The job file's email entry (see schema/email.schema.json). */
export interface EmailSettings extends NotifierSettings {
  type: 'email';
  host: string;
  port?: number;
  /** TLS from the first byte (SMTPS). */
  secure?: boolean;
  /** Without `secure`: STARTTLS required (default), used when offered, or never. */
  starttls?: 'required' | 'opportunistic' | 'never';
  username?: string;
  password?: SecretRef;
  from: string;
  to: string | string[];
  subjectPrefix?: string;
  tls?: { rejectUnauthorized?: boolean; servername?: string };
}

/** How long a silent SMTP server is waited for, per step; the core's own time limit covers the whole send. */
const SMTP_TIMEOUT_MS = 20_000;

export const emailNotifierFactory: NotifierFactory = {
  create: (settings, context) => new EmailNotifier(settings as EmailSettings, context),
};

/** Sends a notification as a plain-text email over SMTP (nodemailer); one connection per notification. */
export class EmailNotifier implements Notifier {
  constructor(
    private readonly settings: EmailSettings,
    private readonly context: NotifierCreateContext,
  ) {}

  async send(notification: Notification, options: { signal?: AbortSignal } = {}): Promise<void> {
    const transportOptions = await this.#transportOptions();
    // nodemailer is loaded only when an email is actually sent.
    const { createTransport } = await import('nodemailer');
    const transport = createTransport(transportOptions as TransportOptions);
    try {
      const message: SendMailOptions & { signal?: AbortSignal } = { ...emailMessage(this.settings, notification), ...(options.signal && { signal: options.signal }) };
      await transport.sendMail(message);
    } finally {
      transport.close();
    }
  }

  async #transportOptions(): Promise<SMTPTransport.Options> {
    const { host, secure = false, starttls = 'required', username, password, tls } = this.settings;
    const pass = password ? await this.context.readSecret(password, 'SMTP password') : undefined;
    return {
      host,
      port: this.settings.port ?? (secure ? 465 : 587),
      secure,
      requireTLS: !secure && starttls === 'required',
      ignoreTLS: !secure && starttls === 'never',
      ...(username !== undefined && { auth: { user: username, ...(pass !== undefined && { pass }) } }),
      // Certificates are checked unless the job file turns that off, explicitly.
      ...(tls && { tls: { ...(tls.rejectUnauthorized === false && { rejectUnauthorized: false }), ...(tls.servername && { servername: tls.servername }) } }),
      connectionTimeout: SMTP_TIMEOUT_MS,
      greetingTimeout: SMTP_TIMEOUT_MS,
      socketTimeout: SMTP_TIMEOUT_MS,
    };
  }
}

/** `[cairn] laptop-system: backup failed on host1`. */
export function emailSubject(settings: Pick<EmailSettings, 'subjectPrefix'>, n: Notification): string {
  const prefix = settings.subjectPrefix ?? '[cairn]';
  return `${prefix ? `${prefix} ` : ''}${n.job}: ${n.operation} ${notificationResult(n)} on ${n.host}`;
}

/** The message: the summary, then every fact on a line of its own. */
export function emailMessage(settings: EmailSettings, n: Notification): SendMailOptions {
  return {
    from: settings.from,
    to: settings.to,
    subject: emailSubject(settings, n),
    text: `${n.summary}\n\n${formatNotificationFacts(n)}\n\n-- \nSent by cairn on ${n.host}.\n`,
  };
}
