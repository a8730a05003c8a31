import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { posix, resolve } from 'node:path';
import type { SFTPWrapper } from 'ssh2-sftp-client';
import { TEMP_PREFIX, TargetError, YoungGarbage, tempName, tempWriterIsGone } from '@cairn/core';
import type { ByteRange, Leftovers, ObjectInfo, ObjectWriter, SecretRef, Target, TargetCreateContext, TargetSettings } from '@cairn/core';
import { ConnectionLostError, ConnectionRefusedError, openConnection, type ConnectionConfig, type SftpConnection } from './connection.js';
import { SftpObjectWriter, type Pin } from './object-writer.js';
import { SFTP_NO_SUCH_FILE, call, messageOf, statusOf } from './sftp-calls.js';

export interface SftpTargetSettings extends TargetSettings {
  type: 'sftp';
  host: string;
  port?: number;
  username: string;
  path: string;
  privateKeyPath?: string;
  passphrase?: SecretRef;
  password?: SecretRef;
  agent?: boolean | string;
  knownHostsPath?: string;
  hostKeyFingerprint?: string;
  acceptNewHostKey?: boolean;
  connections?: number;
  requestsInFlight?: number;
  connectTimeoutSeconds?: number;
  operationTimeoutSeconds?: number;
  keepaliveSeconds?: number;
  retryForSeconds?: number;
}

/** Tuning that is not about where or who: the schema's defaults, applied in one place. */
export interface SftpTuning {
  connections: number;
  requestsInFlight: number;
  operationTimeoutMs: number;
  retryForMs: number;
}

export function applyDefaults(settings: SftpTargetSettings): Required<Pick<SftpTargetSettings, 'port' | 'agent' | 'acceptNewHostKey' | 'connections' | 'requestsInFlight' | 'connectTimeoutSeconds' | 'operationTimeoutSeconds' | 'keepaliveSeconds' | 'retryForSeconds'>> & SftpTargetSettings {
  return {
    port: 22,
    agent: true,
    acceptNewHostKey: false,
    connections: 2,
    requestsInFlight: 32,
    connectTimeoutSeconds: 20,
    operationTimeoutSeconds: 120,
    keepaliveSeconds: 15,
    retryForSeconds: 60,
    ...settings,
  };
}

/**
 * Objects are uploaded as `<folder>/.tmp-<host>-<pid>-<random>` and renamed into place; `list`
 * skips such names. Host and pid say which writer a leftover temp file belonged to, so that
 * `removeLeftovers` can remove those of dead writers on this host at once.
 */
const FILE_MODE = 0o600;
const FOLDER_MODE = 0o700;
const KEY = /^([a-z0-9_.-]+\/)*[a-z0-9_.-]+$/;
const KEY_PREFIX = /^([a-z0-9_.-]+\/)*[a-z0-9_.-]*$/;
/** Largest request payload; OpenSSH's sftp-server takes 256 KiB messages. */
const MAX_REQUEST = 255 * 1024;
/**
 * ssh2 gives every SSH packet and every SFTP message a new buffer of its own, two or three
 * copies of each byte moved, all dead once the reply is handled. Left to V8 they piled up to
 * 20-25 MB more at the peak of a restore; a minor collection per MiB moved frees them.
 */
const TRANSPORT_GARBAGE_EVERY = 1024 * 1024;

// SFTP status codes (draft-ietf-secsh-filexfer-02).
const SFTP_EOF = 1;
const SFTP_PERMISSION_DENIED = 3;
const SFTP_FAILURE = 4;
const SFTP_NO_CONNECTION = 6;
const SFTP_CONNECTION_LOST = 7;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

/** The file ended before the bytes asked for (internal; turned into a TargetError). */
class EndOfFile extends Error {}

/** A key with no object behind it (the only error `isNotFound` accepts). */
export class SftpObjectNotFoundError extends TargetError {}

/** Creates the target; reads the key file and secrets now, connects on first use. */
export async function createSftpTarget(raw: TargetSettings, context: TargetCreateContext): Promise<SftpTarget> {
  const settings = applyDefaults(raw as SftpTargetSettings);
  const expand = (path: string) => (path === '~' || path.startsWith('~/') ? posix.join(homedir(), path.slice(1)) : resolve(context.baseDir, path));
  const config: ConnectionConfig = {
    host: settings.host,
    port: settings.port,
    username: settings.username,
    path: settings.path,
    hostKey:
      settings.hostKeyFingerprint !== undefined
        ? { fingerprint: settings.hostKeyFingerprint.replace(/=+$/, '') }
        : { knownHostsPath: expand(settings.knownHostsPath ?? '~/.ssh/known_hosts'), acceptNew: settings.acceptNewHostKey },
    connectTimeoutMs: settings.connectTimeoutSeconds * 1000,
    keepaliveMs: settings.keepaliveSeconds * 1000,
  };
  if (settings.privateKeyPath !== undefined) {
    config.privateKeyPath = expand(settings.privateKeyPath);
    try {
      config.privateKey = await readFile(config.privateKeyPath);
    } catch (err) {
      throw new TargetError(`Cannot read the private key ${config.privateKeyPath} for SFTP server ${settings.host}: ${(err as Error).message}`, { cause: err });
    }
  }
  if (settings.passphrase !== undefined) config.passphrase = await context.readSecret(settings.passphrase, `the passphrase of ${config.privateKeyPath ?? 'the private key'}`);
  if (settings.password !== undefined) config.password = await context.readSecret(settings.password, `the SSH password of ${settings.username}@${settings.host}`);
  if (typeof settings.agent === 'string') config.agent = settings.agent;
  else if (settings.agent && process.env['SSH_AUTH_SOCK']) config.agent = process.env['SSH_AUTH_SOCK'];
  if (config.privateKey === undefined && config.password === undefined && config.agent === undefined) {
    throw new TargetError(
      `No way to log in to SFTP server ${settings.host}: set "privateKeyPath", "password", or run an ssh-agent (SSH_AUTH_SOCK is not set).`,
    );
  }
  return new SftpTarget(config, {
    connections: settings.connections,
    requestsInFlight: settings.requestsInFlight,
    operationTimeoutMs: settings.operationTimeoutSeconds * 1000,
    retryForMs: settings.retryForSeconds * 1000,
  });
}

interface Slot {
  connection?: SftpConnection;
  connecting?: Promise<SftpConnection>;
  active: number;
}

/**
 * A repository in a folder on an SSH server. Operations are spread over a few connections; each
 * transfer keeps many read or write requests in flight. A dropped connection is re-opened and the
 * operation retried (every operation is idempotent: puts go to a fresh temp name) until
 * `retryForMs` has passed without success.
 */
export class SftpTarget implements Target {
  readonly location: string;
  readonly root: string;
  readonly #slots: Slot[];
  readonly #folders = new Map<string, Promise<void>>();
  /** Temp files of puts interrupted by a dropped connection, removed when a connection works again. */
  readonly #orphans = new Set<string>();
  readonly #transportGarbage = new YoungGarbage(TRANSPORT_GARBAGE_EVERY);
  #everConnected = false;
  #disposed = false;

  constructor(
    readonly config: ConnectionConfig,
    readonly tuning: SftpTuning,
  ) {
    this.root = config.path.replace(/\/+$/, '') || '/';
    const shownPath = this.root.startsWith('/') ? this.root : `~/${this.root}`;
    this.location = `sftp://${config.username}@${config.host}${config.port === 22 ? '' : `:${config.port}`}${shownPath.startsWith('/') ? '' : '/'}${shownPath}`;
    this.#slots = Array.from({ length: tuning.connections }, () => ({ active: 0 }));
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const path = this.#pathOf(key);
    const folder = posix.dirname(path);
    const buffer = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    await this.#run('write', path, async (sftp, connection) => {
      await this.#ensureFolder(sftp, folder);
      const temp = posix.join(folder, tempName());
      const forget = connection.onClose(() => this.#orphans.add(temp));
      try {
        let handle: Buffer;
        try {
          handle = await call<Buffer>((cb) => sftp.open(temp, 'w', { mode: FILE_MODE }, cb));
        } catch (err) {
          if (statusOf(err) !== SFTP_NO_SUCH_FILE) throw err;
          // The folder vanished since it was made (or was made by someone else's prune): make it again.
          this.#folders.delete(folder);
          await this.#ensureFolder(sftp, folder);
          handle = await call<Buffer>((cb) => sftp.open(temp, 'w', { mode: FILE_MODE }, cb));
        }
        try {
          await this.#writeAll(connection, handle, buffer);
          if (sftp._extensions?.['fsync@openssh.com'] !== undefined) await call((cb) => sftp.ext_openssh_fsync(handle, cb));
        } finally {
          // Not waited for: sftp-server handles a channel's requests in order, so the close is done before the rename.
          sftp.close(handle, () => undefined);
        }
        await this.#rename(sftp, temp, path);
      } catch (err) {
        if (connection.alive) await call((cb) => sftp.unlink(temp, cb)).catch(() => undefined);
        throw err;
      } finally {
        if (connection.alive) forget();
      }
    });
  }

  /**
   * Streams an object (a pack as it fills) to a temp file in the repository's folder, renamed
   * into place on commit; a dropped connection resumes it (see SftpObjectWriter).
   */
  async openWriter(): Promise<ObjectWriter> {
    return new SftpObjectWriter(posix.join(this.root, tempName()), {
      run: (verb, path, operation, pin) => this.#run(verb, path, operation, pin),
      ensureFolder: (sftp, folder) => this.#ensureFolder(sftp, folder),
      writeAt: (connection, handle, data, position) => this.#writeAll(connection, handle, data, position),
      pathOf: (key) => this.#pathOf(key),
      place: async (sftp, temp, path) => {
        await this.#ensureFolder(sftp, posix.dirname(path));
        await this.#rename(sftp, temp, path);
      },
      removeLater: (temp) => this.#orphans.add(temp),
      describe: (path) => this.#describe(path),
    });
  }

  async get(key: string, range?: ByteRange): Promise<Buffer> {
    if (range !== undefined) {
      const out = Buffer.allocUnsafe(range.length >= 0 ? range.length : 0);
      await this.#readRange(key, range.offset, range.length, [out]);
      return out;
    }
    const path = this.#pathOf(key);
    return this.#run('read', path, async (sftp, connection) => {
      const handle = await call<Buffer>((cb) => sftp.open(path, 'r', {}, cb));
      try {
        const attrs = await call<{ size: number; mode: number }>((cb) => sftp.fstat(handle, cb));
        if ((attrs.mode & S_IFMT) !== S_IFREG) throw new SftpObjectNotFoundError(`No object at ${this.#describe(path)} (not a file)`);
        const out = Buffer.allocUnsafe(attrs.size);
        await this.#readAll(connection, handle, 0, [out]).catch((err: unknown) => {
          throw err instanceof EndOfFile ? new TargetError(`${this.#describe(path)} ended early: it changed while being read`) : err;
        });
        return out;
      } finally {
        // Nothing waits for the close: the reply only costs another round trip.
        sftp.close(handle, () => undefined);
      }
    });
  }

  /** Reads straight into `into` (a restore's chunk slots): no buffer of its own per read. */
  async readInto(key: string, offset: number, into: readonly Uint8Array[]): Promise<void> {
    await this.#readRange(key, offset, into.reduce((sum, buffer) => sum + buffer.length, 0), into);
  }

  /** A ranged read (restore's hot path) into `into`: open and the pipelined reads are the only round trips, no fstat. */
  #readRange(key: string, offset: number, length: number, into: readonly Uint8Array[]): Promise<void> {
    const path = this.#pathOf(key);
    return this.#run('read', path, async (sftp, connection) => {
      const handle = await call<Buffer>((cb) => sftp.open(path, 'r', {}, cb));
      try {
        if (!(offset >= 0 && length >= 0)) throw new TargetError(`Invalid range ${offset}+${length} for ${this.#describe(path)}`);
        try {
          await this.#readAll(connection, handle, offset, into);
        } catch (err) {
          if (err instanceof EndOfFile) throw new TargetError(`Range ${offset}+${length} is past the end of ${this.#describe(path)}`);
          if (statusOf(err) === SFTP_FAILURE) {
            // Reading a folder fails this way: a folder where an object should be is no object.
            const attrs = await call<{ mode: number }>((cb) => sftp.fstat(handle, cb));
            if ((attrs.mode & S_IFMT) !== S_IFREG) throw new SftpObjectNotFoundError(`No object at ${this.#describe(path)} (not a file)`);
          }
          throw err;
        }
      } finally {
        sftp.close(handle, () => undefined);
      }
    });
  }

  async stat(key: string): Promise<ObjectInfo> {
    const path = this.#pathOf(key);
    return this.#run('stat', path, async (sftp) => {
      const attrs = await call<{ size: number; mode: number }>((cb) => sftp.stat(path, cb));
      if ((attrs.mode & S_IFMT) !== S_IFREG) throw new SftpObjectNotFoundError(`No object at ${this.#describe(path)} (not a file)`);
      return { key, size: attrs.size };
    });
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    if (!KEY_PREFIX.test(prefix) || prefix.split('/').some((s) => s === '.' || s === '..')) {
      throw new TargetError(`Invalid key prefix '${prefix}' for ${this.location}`);
    }
    yield* this.#walk(prefix.slice(0, prefix.lastIndexOf('/') + 1), prefix);
  }

  async remove(key: string): Promise<void> {
    const path = this.#pathOf(key);
    let attempt = 0;
    await this.#run('remove', path, async (sftp) => {
      attempt++;
      try {
        // unlink would also remove a symlink or fail oddly on a folder: only files are objects.
        const attrs = await call<{ mode: number }>((cb) => sftp.stat(path, cb));
        if ((attrs.mode & S_IFMT) !== S_IFREG) throw new SftpObjectNotFoundError(`No object at ${this.#describe(path)} (not a file)`);
        await call((cb) => sftp.unlink(path, cb));
      } catch (err) {
        // A retried remove whose first attempt went through before the connection dropped.
        if (attempt > 1 && statusOf(err) === SFTP_NO_SUCH_FILE) return;
        throw err;
      }
    });
  }

  /**
   * Removes the temp files of puts whose writer died: any last modified before `before` (by the
   * server's clock), and at once those of a process of this host that no longer runs.
   */
  async removeLeftovers(before: Date): Promise<Leftovers> {
    const removed: Leftovers = { count: 0, bytes: 0 };
    const visit = async (folder: string): Promise<void> => {
      const entries = await this.#run('list', folder, async (sftp) => {
        try {
          return await call<Array<{ filename: string; attrs: { mode: number; size: number; mtime: number } }>>((cb) => sftp.readdir(folder, cb));
        } catch (err) {
          if (statusOf(err) === SFTP_NO_SUCH_FILE) return [];
          throw err;
        }
      });
      for (const { filename, attrs } of entries) {
        if (filename === '.' || filename === '..') continue;
        const path = posix.join(folder, filename);
        const type = attrs.mode & S_IFMT;
        if (type === S_IFDIR) await visit(path);
        else if (type === S_IFREG && filename.startsWith(TEMP_PREFIX) && (attrs.mtime * 1000 < before.getTime() || tempWriterIsGone(filename))) {
          const gone = await this.#run('remove', path, async (sftp) => {
            try {
              await call((cb) => sftp.unlink(path, cb));
              return true;
            } catch (err) {
              // Renamed into place or removed by someone else meanwhile.
              if (statusOf(err) === SFTP_NO_SUCH_FILE) return false;
              throw err;
            }
          });
          if (gone) {
            removed.count++;
            removed.bytes += attrs.size;
          }
        }
      }
    };
    await visit(this.root);
    return removed;
  }

  isNotFound(err: unknown): boolean {
    return err instanceof SftpObjectNotFoundError;
  }

  async dispose(): Promise<void> {
    this.#disposed = true;
    const closing = this.#slots.map(async (slot) => {
      const connection = slot.connection ?? (await slot.connecting?.catch(() => undefined));
      slot.connection = undefined;
      slot.connecting = undefined;
      await connection?.close();
    });
    await Promise.all(closing);
  }

  // ---- operations with reconnect and retry ----

  /**
   * Runs `operation` on a connection (the pinned one while it lives, when `pin` is given; the
   * connection used is pinned); on a dropped connection, reconnects and runs it again until
   * `retryForMs` has passed.
   */
  async #run<T>(verb: string, path: string, operation: (sftp: SFTPWrapper, connection: SftpConnection) => Promise<T>, pin?: Pin): Promise<T> {
    let firstFailure: number | undefined;
    let delay = 200;
    for (;;) {
      if (this.#disposed) throw new TargetError(`Cannot ${verb} ${this.#describe(path)}: the target was closed`);
      const pinned = pin?.connection?.alive ? pin.connection : undefined;
      const slot = (pinned && this.#slots.find((s) => s.connection === pinned)) || this.#pickSlot();
      slot.active++;
      let used: SftpConnection | undefined;
      try {
        const connection = (used = pinned ?? (await this.#connectionOf(slot)));
        if (pin) pin.connection = connection;
        const result = await this.#watch(connection, operation(connection.sftp, connection));
        this.#cleanOrphans(connection);
        return result;
      } catch (err) {
        if (err instanceof TargetError) throw err;
        if (!(err instanceof ConnectionLostError) && isStatusError(err)) throw this.#wrap(err, verb, path);
        // The connection is gone (or never came up): drop it and try again on a new one.
        if (!this.#everConnected && err instanceof ConnectionLostError) throw new TargetError(err.message, { cause: err });
        if (used !== undefined) {
          if (slot.connection === used) slot.connection = undefined;
          used.destroy();
        }
        firstFailure ??= Date.now();
        if (Date.now() - firstFailure >= this.tuning.retryForMs) {
          throw new TargetError(
            `Cannot ${verb} ${this.#describe(path)}: lost the connection and could not get it back within ${Math.round(this.tuning.retryForMs / 1000)} s (${messageOf(err)})`,
            { cause: err },
          );
        }
        await sleep(delay);
        delay = Math.min(delay * 2, 5000);
      } finally {
        slot.active--;
      }
    }
  }

  /** Rejects when the connection drops, or when the server answers nothing on it for `operationTimeoutMs`. */
  #watch<T>(connection: SftpConnection, pending: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const started = Date.now();
      const limit = this.tuning.operationTimeoutMs;
      const timer = setInterval(() => {
        if (Date.now() - Math.max(started, connection.lastReply) < limit) return;
        clearInterval(timer);
        connection.destroy();
        reject(new ConnectionLostError(`no answer from the server for ${Math.round(limit / 1000)} s`));
      }, Math.min(limit, 1000));
      timer.unref();
      // ssh2 does not always fail the requests of a dropped connection; do not wait for them.
      const lost = connection.onClose(() => {
        clearInterval(timer);
        reject(new ConnectionLostError('connection lost'));
      });
      pending.then(
        (value) => {
          lost();
          clearInterval(timer);
          resolve(value);
        },
        (err: unknown) => {
          lost();
          clearInterval(timer);
          reject(connection.alive || isStatusError(err) ? err : new ConnectionLostError(`connection lost: ${messageOf(err)}`, { cause: err }));
        },
      );
    });
  }

  #pickSlot(): Slot {
    let best = this.#slots[0]!;
    for (const slot of this.#slots) {
      const live = (s: Slot) => s.connection?.alive === true;
      if (live(slot) && !live(best)) best = slot;
      else if (live(slot) === live(best) && slot.active < best.active) best = slot;
    }
    // Open the first connection before others, so a bad password or host key is reported once.
    return this.#everConnected ? best : this.#slots[0]!;
  }

  async #connectionOf(slot: Slot): Promise<SftpConnection> {
    if (slot.connection?.alive) return slot.connection;
    // A dead connection may still hold its socket (after an 'end' or 'error'); let nothing keep the process alive.
    slot.connection?.destroy();
    slot.connection = undefined;
    slot.connecting ??= openConnection(this.config).then(
      (connection) => {
        slot.connection = connection;
        slot.connecting = undefined;
        this.#everConnected = true;
        return connection;
      },
      (err: unknown) => {
        slot.connecting = undefined;
        throw err;
      },
    );
    const connection = await slot.connecting;
    if (this.#disposed) await connection.close();
    return connection;
  }

  #cleanOrphans(connection: SftpConnection): void {
    for (const temp of this.#orphans) {
      this.#orphans.delete(temp);
      connection.sftp.unlink(temp, () => undefined);
    }
  }

  // ---- transfers ----

  #requestSize(sftp: SFTPWrapper, which: '_maxReadLen' | '_maxWriteLen'): number {
    const max = sftp[which];
    return typeof max === 'number' && max > 0 ? Math.min(max, MAX_REQUEST) : 32 * 1024;
  }

  /** Writes the whole buffer at `position` of the file with up to `requestsInFlight` write requests outstanding. */
  #writeAll(connection: SftpConnection, handle: Buffer, data: Buffer, position = 0): Promise<void> {
    const { sftp } = connection;
    const size = this.#requestSize(sftp, '_maxWriteLen');
    return new Promise((resolve, reject) => {
      let next = 0;
      let active = 0;
      let failed = false;
      const pump = () => {
        while (!failed && active < this.tuning.requestsInFlight && next < data.length) {
          const offset = next;
          const length = Math.min(size, data.length - offset);
          next += length;
          active++;
          sftp.write(handle, data, offset, length, position + offset, (err) => {
            active--;
            connection.lastReply = Date.now();
            this.#transportGarbage.dropped(length);
            if (failed) return;
            if (err) {
              failed = true;
              reject(err);
            } else if (next >= data.length && active === 0) resolve();
            else pump();
          });
        }
      };
      if (data.length === 0) resolve();
      else pump();
    });
  }

  /**
   * Fills `into` in turn with the bytes from `start` on, with up to `requestsInFlight` read
   * requests outstanding; a request never spans two buffers, and short reads are continued.
   */
  #readAll(connection: SftpConnection, handle: Buffer, start: number, into: readonly Uint8Array[]): Promise<void> {
    const { sftp } = connection;
    const size = this.#requestSize(sftp, '_maxReadLen');
    const parts = readParts(start, into, size);
    return new Promise((resolve, reject) => {
      let next = 0;
      let active = 0;
      let failed = false;
      const fail = (err: unknown) => {
        if (failed) return;
        failed = true;
        reject(err);
      };
      const readPart = ({ buffer, at, count, position }: ReadPart) => {
        active++;
        sftp.read(handle, buffer, at, count, position, (err, bytesRead) => {
          active--;
          connection.lastReply = Date.now();
          if (bytesRead > 0) this.#transportGarbage.dropped(bytesRead);
          if (failed) return;
          if (err) {
            fail(statusOf(err) === SFTP_EOF ? new EndOfFile() : err);
            return;
          }
          if (bytesRead < count) {
            if (bytesRead === 0) return fail(new EndOfFile());
            readPart({ buffer, at: at + bytesRead, count: count - bytesRead, position: position + bytesRead });
          } else if (next >= parts.length && active === 0) resolve();
          else pump();
        });
      };
      const pump = () => {
        while (!failed && active < this.tuning.requestsInFlight && next < parts.length) readPart(parts[next++]!);
      };
      if (parts.length === 0) resolve();
      else pump();
    });
  }

  /** Replaces `to` atomically with OpenSSH's posix-rename; plain SFTP rename refuses to overwrite. */
  async #rename(sftp: SFTPWrapper, from: string, to: string): Promise<void> {
    if (sftp._extensions?.['posix-rename@openssh.com'] !== undefined) {
      await call((cb) => sftp.ext_openssh_rename(from, to, cb));
      return;
    }
    try {
      await call((cb) => sftp.rename(from, to, cb));
    } catch (err) {
      if (statusOf(err) !== SFTP_FAILURE) throw err;
      // Not atomic, but only servers without posix-rename get here, and objects are replaced only for locks and config.
      await call((cb) => sftp.unlink(to, cb)).catch(() => undefined);
      await call((cb) => sftp.rename(from, to, cb));
    }
  }

  /** Makes `folder` and its missing parents, once per folder for the life of the target. */
  #ensureFolder(sftp: SFTPWrapper, folder: string): Promise<void> {
    let pending = this.#folders.get(folder);
    if (pending === undefined) {
      pending = this.#makeFolder(sftp, folder);
      this.#folders.set(folder, pending);
      pending.catch(() => this.#folders.delete(folder));
    }
    return pending;
  }

  async #makeFolder(sftp: SFTPWrapper, folder: string): Promise<void> {
    const isFolder = async () => {
      try {
        const attrs = await call<{ mode: number }>((cb) => sftp.stat(folder, cb));
        return (attrs.mode & S_IFMT) === S_IFDIR;
      } catch (err) {
        if (statusOf(err) === SFTP_NO_SUCH_FILE) return false;
        throw err;
      }
    };
    if (await isFolder()) return;
    const parent = posix.dirname(folder);
    if (parent !== folder && parent !== '.' && parent !== '/') await this.#ensureFolder(sftp, parent);
    try {
      await call((cb) => sftp.mkdir(folder, { mode: FOLDER_MODE }, cb));
    } catch (err) {
      // Made meanwhile by a concurrent put (sftp-server reports EEXIST as a generic failure).
      if (!(await isFolder())) throw err;
    }
  }

  async *#walk(folderKey: string, prefix: string): AsyncGenerator<ObjectInfo> {
    const folder = folderKey === '' ? this.root : posix.join(this.root, folderKey);
    const entries = await this.#run('list', folder, async (sftp) => {
      try {
        return await call<Array<{ filename: string; attrs: { mode: number; size: number } }>>((cb) => sftp.readdir(folder, cb));
      } catch (err) {
        // A folder that does not exist (yet, or any more) holds no objects.
        if (statusOf(err) === SFTP_NO_SUCH_FILE) return [];
        throw err;
      }
    });
    for (const { filename, attrs } of entries) {
      if (filename === '.' || filename === '..') continue;
      const key = folderKey + filename;
      const type = attrs.mode & S_IFMT;
      if (type === S_IFDIR) {
        const childKey = `${key}/`;
        if (childKey.startsWith(prefix) || prefix.startsWith(childKey)) yield* this.#walk(childKey, prefix);
      } else if (type === S_IFREG && !filename.startsWith(TEMP_PREFIX) && key.startsWith(prefix)) {
        yield { key, size: attrs.size };
      }
    }
  }

  // ---- names and errors ----

  #pathOf(key: string): string {
    if (!KEY.test(key) || key.split('/').some((s) => s === '.' || s === '..' || s.startsWith(TEMP_PREFIX))) {
      throw new TargetError(`Invalid key '${key}' for ${this.location}`);
    }
    return posix.join(this.root, key);
  }

  #describe(path: string): string {
    return `${this.config.host}:${path}`;
  }

  #wrap(err: unknown, verb: string, path: string): Error {
    const status = statusOf(err);
    if (status === SFTP_NO_SUCH_FILE) return new SftpObjectNotFoundError(`No object at ${this.#describe(path)}`, { cause: err });
    const reason =
      status === SFTP_PERMISSION_DENIED ? 'permission denied'
      : status === SFTP_FAILURE ? `the server reported a failure (${messageOf(err)}; full disk, quota, or a file where a folder should be?)`
      : messageOf(err);
    return new TargetError(`Cannot ${verb} ${this.#describe(path)}: ${reason}`, { cause: err });
  }
}

// ---- helpers ----

/** An SFTP status reply: the server answered, so the connection is fine and retrying will not help. */
function isStatusError(err: unknown): boolean {
  const status = statusOf(err);
  return status !== undefined && status !== SFTP_NO_CONNECTION && status !== SFTP_CONNECTION_LOST;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export { ConnectionRefusedError };

/** One read request: `count` bytes at `position` of the file into `buffer` at `at`. */
interface ReadPart {
  buffer: Buffer;
  at: number;
  count: number;
  position: number;
}

/** The read requests that fill `into` in turn from `start` on, each at most `size` bytes and within one buffer. */
function readParts(start: number, into: readonly Uint8Array[], size: number): ReadPart[] {
  const parts: ReadPart[] = [];
  let position = start;
  for (const view of into) {
    const buffer = Buffer.isBuffer(view) ? view : Buffer.from(view.buffer, view.byteOffset, view.byteLength);
    for (let at = 0; at < buffer.length; at += size) {
      const count = Math.min(size, buffer.length - at);
      parts.push({ buffer, at, count, position });
      position += count;
    }
  }
  return parts;
}
