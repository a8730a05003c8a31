import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { simpleParser, type ParsedMail } from 'mailparser';
import type { Notification, NotifierCreateContext, NotifierFactory, PluginContext } from '@cairn/core';
import { createTestPluginContext } from '@cairn/core/testing';
import { activate } from './index.js';
import type { EmailSettings } from './email-notifier.js';

/*
 * The email notifier against a real SMTP server (smtp-server) on 127.0.0.1 that requires a
 * login, checks the password, and parses what it receives (mailparser).
 */

const PLUGIN_FOLDER = fileURLToPath(new URL('..', import.meta.url));
const USER = 'cairn';
const PASSWORD = 'p4ss word!';

interface Received {
  user: string | undefined;
  envelope: { from: string; to: string[] };
  /** Whether the connection was upgraded to TLS when the message came. */
  secure: boolean;
  mail: ParsedMail;
}

interface TestSmtpServer {
  port: number;
  received: Received[];
  close(): Promise<void>;
}

async function startSmtpServer(options: SMTPServerOptions = {}): Promise<TestSmtpServer> {
  const received: Received[] = [];
  const server = new SMTPServer({
    authMethods: ['PLAIN', 'LOGIN'],
    onAuth(auth, _session, callback) {
      if (auth.username === USER && auth.password === PASSWORD) callback(null, { user: USER });
      else callback(Object.assign(new Error('Invalid username or password'), { responseCode: 535 }));
    },
    onData(stream, session, callback) {
      simpleParser(stream)
        .then((mail) => {
          const envelope = { from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address) };
          received.push({ user: session.user as string | undefined, envelope, secure: session.secure, mail });
          callback();
        })
        .catch(callback);
    },
    logger: false,
    ...options,
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = ((server as unknown as { server: { address(): AddressInfo } }).server.address() as AddressInfo).port;
  return { port, received, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

const context: NotifierCreateContext = {
  baseDir: '/',
  readSecret: async (ref) => {
    if ('env' in ref && ref.env === 'SMTP_PASSWORD') return PASSWORD;
    if ('env' in ref && ref.env === 'WRONG_PASSWORD') return 'guess';
    throw new Error(`no secret for ${JSON.stringify(ref)}`);
  },
};

const failure: Notification = {
  event: 'failure',
  job: 'laptop-system',
  host: 'host1',
  operation: 'backup',
  time: '2026-05-01T02:00:00.000Z',
  durationMs: 2500,
  error: { message: 'The source /dev/sdz does not exist', code: 'CAIRN_SOURCE', exitCode: 1 },
  warnings: [],
  summary: 'Backup of laptop-system on host1 failed: The source /dev/sdz does not exist',
};

describe('email notifier', () => {
  let server: TestSmtpServer;
  let plugin: PluginContext;
  let factory: NotifierFactory;
  beforeEach(async () => {
    plugin = await createTestPluginContext(PLUGIN_FOLDER);
    await activate(plugin);
    factory = plugin.notifiers.get('email')!;
  });
  afterEach(async () => {
    await plugin.subscriptions.dispose();
    await server?.close();
  });

  const settings = (extra: Partial<EmailSettings> = {}): EmailSettings => ({
    type: 'email',
    host: '127.0.0.1',
    port: server.port,
    username: USER,
    password: { env: 'SMTP_PASSWORD' },
    from: 'cairn <backup@example.com>',
    to: ['ops@example.com', 'me@example.com'],
    ...extra,
  });
  const send = (extra: Partial<EmailSettings> = {}, notification: Notification = failure) => factory.create(settings(extra), context).send(notification);

  it('logs in and sends a plain-text mail naming the job, the host, the result and the error', async () => {
    server = await startSmtpServer({ disabledCommands: ['STARTTLS'], allowInsecureAuth: true });
    await send({ starttls: 'never' });
    expect(server.received).toHaveLength(1);
    const { user, envelope, mail } = server.received[0]!;
    expect(user).toBe(USER);
    expect(envelope).toEqual({ from: 'backup@example.com', to: ['ops@example.com', 'me@example.com'] });
    expect(mail.subject).toBe('[cairn] laptop-system: backup failed on host1');
    expect(mail.from?.value).toEqual([{ name: 'cairn', address: 'backup@example.com' }]);
    expect(mail.html).toBe(false);
    expect(mail.text!.split('\n')).toEqual([
      failure.summary,
      '',
      'Job: laptop-system',
      'Host: host1',
      'Operation: backup',
      'Result: failed',
      'Time: 2026-05-01T02:00:00.000Z',
      'Duration: 2.5 s',
      'Error: The source /dev/sdz does not exist (CAIRN_SOURCE, exit code 1)',
      '',
      '-- ',
      'Sent by cairn on host1.',
      '',
    ]);
  });

  it('a wrong password is a failed delivery that says the server refused the login', async () => {
    server = await startSmtpServer({ disabledCommands: ['STARTTLS'], allowInsecureAuth: true });
    await expect(send({ starttls: 'never', password: { env: 'WRONG_PASSWORD' } })).rejects.toThrow(/535|Invalid username or password/);
    expect(server.received).toEqual([]);
  });

  it('requires STARTTLS by default, and refuses a server that does not offer it', async () => {
    server = await startSmtpServer({ disabledCommands: ['STARTTLS'], allowInsecureAuth: true });
    await expect(send()).rejects.toThrow(/STARTTLS/i);
    expect(server.received).toEqual([]);
  });

  it('checks the server\'s certificate unless told, explicitly, not to', async () => {
    // smtp-server's built-in certificate is self-signed.
    server = await startSmtpServer();
    await expect(send()).rejects.toThrow(/certificate/i);
    await send({ tls: { rejectUnauthorized: false }, subjectPrefix: '[nas]', to: 'ops@example.com' });
    expect(server.received).toHaveLength(1);
    expect(server.received[0]!.secure).toBe(true);
    expect(server.received[0]!.mail.subject).toBe('[nas] laptop-system: backup failed on host1');
  });

  it('speaks TLS from the first byte with secure', async () => {
    server = await startSmtpServer({ secure: true });
    await send({ secure: true, tls: { rejectUnauthorized: false } });
    expect(server.received.map((r) => r.secure)).toEqual([true]);
  });
});
