import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { SFTPWrapper } from 'ssh2-sftp-client';
import { TargetError } from '@cairn/core';
import { checkKnownHosts, fingerprintOf, keyTypeOf, knownHostsLine, knownHostsName, knownKeyTypes } from './known-hosts.js';

/** Everything needed to open one connection, resolved from the job's settings (secrets already read). */
export interface ConnectionConfig {
  host: string;
  port: number;
  username: string;
  /** For messages: where on the server the repository lives. */
  path: string;
  privateKey?: Buffer;
  privateKeyPath?: string;
  passphrase?: string;
  password?: string;
  agent?: string;
  hostKey: { fingerprint: string } | { knownHostsPath: string; acceptNew: boolean };
  connectTimeoutMs: number;
  keepaliveMs: number;
}

/** A connection failed for a reason that waiting and retrying will not fix (host key, authentication, bad key file). */
export class ConnectionRefusedError extends TargetError {}

/** The connection broke (or never came up) for a network reason; the operation may be retried on a new one. */
export class ConnectionLostError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConnectionLostError';
  }
}

/** Host key types as the client asks for them; an RSA key is offered under its SHA-2 signature names. */
const HOST_KEY_ALGORITHMS: Record<string, string[]> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
};

/** AES-GCM first: node's OpenSSL makes it the fastest cipher on machines with AES instructions. */
const CIPHERS = ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com'];

/** One SSH connection with its SFTP channel. `alive` turns false once the connection closes or errors. */
export class SftpConnection {
  alive = true;
  /** When the server last answered a transfer request; a long transfer that keeps getting answers is not stuck. */
  lastReply = Date.now();
  readonly #onClose: Array<() => void> = [];

  constructor(
    readonly sftp: SFTPWrapper,
    private readonly client: { end(): Promise<boolean>; client: { destroy(): void } },
  ) {}

  /** Calls `listener` once the connection is dead; returns a function that unregisters it. */
  onClose(listener: () => void): () => void {
    if (!this.alive) {
      listener();
      return () => undefined;
    }
    this.#onClose.push(listener);
    return () => {
      const i = this.#onClose.indexOf(listener);
      if (i >= 0) this.#onClose.splice(i, 1);
    };
  }

  /** Marks the connection dead and tells everyone waiting on it. */
  markDead(): void {
    if (!this.alive) return;
    this.alive = false;
    for (const listener of this.#onClose.splice(0)) listener();
  }

  /** Drops the connection at once (a stuck request); pending requests fail. */
  destroy(): void {
    this.markDead();
    try {
      this.client.client.destroy();
    } catch {
      // Already gone.
    }
  }

  async close(): Promise<void> {
    this.markDead();
    await this.client.end().catch(() => undefined);
    this.destroy();
  }
}

function describeServer(config: ConnectionConfig): string {
  return `SFTP server ${config.host} port ${config.port}`;
}

/**
 * Opens a connection. The SSH library is imported here, on first use, so that activating
 * the plugin (or running a job that uses another target) never loads it.
 * Throws ConnectionRefusedError for host key and authentication failures, ConnectionLostError otherwise.
 */
export async function openConnection(config: ConnectionConfig): Promise<SftpConnection> {
  const { default: Client } = await import('ssh2-sftp-client');
  const hostKeys = new HostKeyJudge(config, await readKnownHosts(config));
  let connection: SftpConnection | undefined;
  const client = new Client(`cairn-${config.host}`, {
    // The library reports events after connecting through these; a dead connection is reconnected by the target.
    error: () => connection?.markDead(),
    end: () => connection?.markDead(),
    close: () => connection?.markDead(),
  });
  try {
    const connecting = client.connect(connectOptions(config, hostKeys));
    // readyTimeout covers the handshake only; this also bounds opening the SFTP channel after it.
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })), config.connectTimeoutMs + 1000);
    });
    connecting.catch(() => undefined);
    const sftp = await Promise.race([connecting, deadline]).finally(() => clearTimeout(timer));
    // Without TCP_NODELAY a read request could wait for the server's delayed ACK (up to 40 ms on
    // Linux) behind the previous one: ranged reads then took 40-130 ms each on loopback.
    client.client.setNoDelay(true);
    connection = new SftpConnection(sftp, client);
    sftp.on('close', () => connection?.markDead());
    client.client.on('close', () => connection?.markDead());
  } catch (err) {
    client.client.destroy();
    throw connectionError(config, err, hostKeys.refusal);
  }
  await hostKeys.recordAccepted();
  return connection;
}

/** The known_hosts text the job's host key check uses ('' for a pinned fingerprint or a missing file). */
async function readKnownHosts(config: ConnectionConfig): Promise<string> {
  if (!('knownHostsPath' in config.hostKey)) return '';
  const { knownHostsPath } = config.hostKey;
  // A missing known_hosts file knows no host; the server's key is then unknown.
  return readFile(knownHostsPath, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw new ConnectionRefusedError(`Cannot read the known_hosts file ${knownHostsPath}: ${err.message}`, { cause: err });
  });
}

/** The ssh2 options of one connection: credentials, timeouts, the host key check and the preferred algorithms. */
function connectOptions(config: ConnectionConfig, hostKeys: HostKeyJudge) {
  const serverHostKey = hostKeys.preferredAlgorithms();
  return {
    host: config.host,
    port: config.port,
    username: config.username,
    ...(config.privateKey !== undefined && { privateKey: config.privateKey }),
    ...(config.passphrase !== undefined && { passphrase: config.passphrase }),
    ...(config.password !== undefined && { password: config.password }),
    ...(config.agent !== undefined && { agent: config.agent }),
    readyTimeout: config.connectTimeoutMs,
    keepaliveInterval: config.keepaliveMs,
    keepaliveCountMax: 3,
    hostVerifier: (key: Buffer) => hostKeys.verify(key),
    // ssh2 keeps a `prepend` list in the order given, ahead of its defaults.
    algorithms: {
      cipher: { remove: CIPHERS, prepend: CIPHERS },
      ...(serverHostKey.length > 0 && { serverHostKey: { remove: serverHostKey, prepend: serverHostKey } }),
    },
    // This target retries on its own terms.
    retries: 0,
  };
}

/** What a failed connection attempt means for the user: refused (host key, login, key file) or lost (network). */
function connectionError(config: ConnectionConfig, err: unknown, refusal: string | undefined): Error {
  if (refusal !== undefined) return new ConnectionRefusedError(refusal, { cause: err });
  const message = err instanceof Error ? err.message : String(err);
  if (/authentication methods failed/i.test(message)) {
    return new ConnectionRefusedError(
      `${describeServer(config)} refused to log in user '${config.username}' with ${authMethods(config)}: check the user name and that the server accepts the key or password (for repository ${config.path}).`,
      { cause: err },
    );
  }
  const where = `${describeServer(config)} (repository ${config.path})`;
  if (/privateKey|passphrase|Encrypted private/i.test(message)) {
    return new ConnectionRefusedError(`Cannot use the private key ${config.privateKeyPath ?? ''} for ${where}: ${stripPrefix(message)}`, { cause: err });
  }
  return new ConnectionLostError(`Cannot connect to ${where}: ${networkReason(err)}`, { cause: err });
}

/**
 * Judges the server's host key against the pinned fingerprint or known_hosts, during the
 * handshake; remembers why it refused one, and the known_hosts line of a new key it accepted
 * (written only once the connection is up).
 */
class HostKeyJudge {
  refusal: string | undefined;
  #acceptLine: string | undefined;

  constructor(
    private readonly config: ConnectionConfig,
    private readonly knownHostsText: string,
  ) {}

  /** Host key algorithms to ask for first: those of the types known_hosts holds for this host. */
  preferredAlgorithms(): string[] {
    if (!('knownHostsPath' in this.config.hostKey)) return [];
    return knownKeyTypes(this.knownHostsText, this.config.host, this.config.port).flatMap((type) => HOST_KEY_ALGORITHMS[type] ?? []);
  }

  verify(key: Buffer): boolean {
    const { config } = this;
    const seen = `${keyTypeOf(key)} key ${fingerprintOf(key)}`;
    if ('fingerprint' in config.hostKey) {
      if (fingerprintOf(key) === config.hostKey.fingerprint) return true;
      this.refusal =
        `The host key of ${describeServer(config)} does not match the pinned fingerprint: the server showed ${seen}, ` +
        `the job expects ${config.hostKey.fingerprint}. The connection was refused; someone may be intercepting it. ` +
        `If the server's key was changed on purpose, update "hostKeyFingerprint" in the job file.`;
      return false;
    }
    return this.#verifyKnownHost(key, seen, config.hostKey);
  }

  #verifyKnownHost(key: Buffer, seen: string, { knownHostsPath, acceptNew }: { knownHostsPath: string; acceptNew?: boolean }): boolean {
    const { config } = this;
    const verdict = checkKnownHosts(this.knownHostsText, config.host, config.port, key);
    switch (verdict.status) {
      case 'known':
        return true;
      case 'unknown':
        if (acceptNew) {
          this.#acceptLine = knownHostsLine(config.host, config.port, key);
          return true;
        }
        this.refusal =
          `The host key of ${describeServer(config)} is unknown: the server showed ${seen}, and ${knownHostsPath} has no entry for ` +
          `${knownHostsName(config.host, config.port)}. Check the fingerprint with the server's administrator (ssh-keygen -lf on the server's host key), ` +
          `then add it to known_hosts, pin it with "hostKeyFingerprint": "${fingerprintOf(key)}", or set "acceptNewHostKey": true.`;
        return false;
      case 'changed':
        this.refusal =
          `The host key of ${describeServer(config)} HAS CHANGED: the server showed ${seen}, which does not match ` +
          `${knownHostsPath} (line ${verdict.lines.join(', ')}). Someone may be intercepting the connection, so it was refused. ` +
          `If the key was changed on purpose, remove the old entry (ssh-keygen -R '${knownHostsName(config.host, config.port)}') and add the new one.`;
        return false;
      case 'revoked':
        this.refusal = `The host key of ${describeServer(config)} (${seen}) is marked @revoked in ${knownHostsPath} line ${verdict.line}; the connection was refused.`;
        return false;
    }
  }

  /** Appends the key accepted under `acceptNewHostKey` to known_hosts. */
  async recordAccepted(): Promise<void> {
    if (this.#acceptLine === undefined || !('knownHostsPath' in this.config.hostKey)) return;
    const path = this.config.hostKey.knownHostsPath;
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await appendFile(path, this.#acceptLine, { mode: 0o600 });
  }
}

function authMethods(config: ConnectionConfig): string {
  const methods = [];
  if (config.privateKeyPath !== undefined) methods.push(`the key ${config.privateKeyPath}`);
  if (config.agent !== undefined) methods.push('the keys of the ssh-agent');
  if (config.password !== undefined) methods.push('the password');
  return methods.length > 0 ? methods.join(', ') : 'no credentials (set privateKeyPath, agent or password)';
}

function stripPrefix(message: string): string {
  return message.replace(/^[\w-]+: (getConnection: )?/, '');
}

const NETWORK_REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused (is sshd running and the port right?)',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed (temporary)',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'timed out',
  ECONNRESET: 'connection reset by the server',
};

export function networkReason(err: unknown): string {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && NETWORK_REASONS[code]) return NETWORK_REASONS[code];
  const message = err instanceof Error ? err.message : String(err);
  if (/timed out/i.test(message)) return 'timed out waiting for the server';
  return stripPrefix(message);
}
