import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { lstat, rm, chmod } from 'node:fs/promises';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { Duplex } from 'node:stream';
import { NbdServeError, describeSystemError } from '../errors.js';
import type { IDisposable } from '../lifecycle.js';
import type { Logger } from '../services.js';
import type { ExportSource } from './export-source.js';
import { Handshake } from './nbd-handshake.js';
import { ConnectionClosed, NbdReader } from './nbd-reader.js';
import { Transmission } from './nbd-transmission.js';

export interface NbdServerOptions {
  /** What the server offers, by name ('' is the default export). Names must be unique. */
  exports: readonly ExportSource[];
  logger?: Logger;
  /** Requests answered at once per connection; more wait (pipelining clients send many). Default 16. */
  maxInFlight?: number;
  /** With a TLS context the server requires NBD_OPT_STARTTLS before anything else (the spec's FORCEDTLS mode). */
  tls?: SecureContext;
}

/** Where to listen: a Unix socket (created mode 0600, removed on close), or a TCP address. */
export type NbdListenAddress = { socket: string } | { host: string; port: number };

/** How long `close()` lets requests in flight finish before it cuts their connections. */
const SHUTDOWN_GRACE_MS = 5000;

const SILENT: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * An NBD server (the NetworkBlockDevice project's doc/proto.md): fixed newstyle handshake,
 * structured replies, `base:allocation`, many clients at once, each pipelining requests.
 */
export class NbdServer implements IDisposable {
  readonly #exports: ReadonlyMap<string, ExportSource>;
  readonly #logger: Logger;
  readonly #connections = new Set<Connection>();
  #server: Server | undefined;
  #socketPath: string | undefined;

  constructor(private readonly options: NbdServerOptions) {
    const exports = new Map<string, ExportSource>();
    for (const source of options.exports) {
      if (exports.has(source.name)) throw new Error(`Two exports named "${source.name}"`);
      exports.set(source.name, source);
    }
    this.#exports = exports;
    this.#logger = options.logger ?? SILENT;
  }

  /** Connections open now (in the handshake or serving). */
  get connections(): number {
    return this.#connections.size;
  }

  /** Starts listening; resolves with the address bound (the port chosen, when 0 was asked for). */
  async listen(address: NbdListenAddress): Promise<NbdListenAddress> {
    if (this.#server) throw new Error('The NBD server is already listening');
    const server = createServer((socket) => this.#accept(socket));
    this.#server = server;
    if ('socket' in address) {
      await removeStaleSocket(address.socket);
      // Created 0600 from the start: no moment when another user could connect.
      await listenOn(server, { path: address.socket }, address.socket, 0o177);
      this.#socketPath = address.socket;
      await chmod(address.socket, 0o600);
      return { socket: address.socket };
    }
    await listenOn(server, { host: address.host, port: address.port }, `${address.host}:${address.port}`);
    const bound = server.address() as AddressInfo;
    return { host: bound.address, port: bound.port };
  }

  /** Stops listening, lets requests in flight finish (a few seconds at most), closes every connection and removes the socket file. */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    await Promise.all([...this.#connections].map((connection) => connection.shutdown(SHUTDOWN_GRACE_MS)));
    await closed;
    if (this.#socketPath) await rm(this.#socketPath, { force: true });
    this.#socketPath = undefined;
  }

  dispose(): Promise<void> {
    return this.close();
  }

  #accept(socket: Socket): void {
    const connection = new Connection(socket, this.#exports, this.#logger, this.options);
    this.#connections.add(connection);
    void connection.serve().finally(() => this.#connections.delete(connection));
  }
}

/** One client: the handshake, then the transmission phase, on a socket that may turn into TLS. */
class Connection {
  #stream: Duplex;
  #reader: NbdReader;
  #transmission: Transmission | undefined;
  #ended = false;
  readonly #peer: string;

  constructor(
    private readonly socket: Socket,
    private readonly exports: ReadonlyMap<string, ExportSource>,
    private readonly logger: Logger,
    private readonly options: NbdServerOptions,
  ) {
    this.#stream = socket;
    this.#reader = new NbdReader(socket);
    this.#peer = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : 'a local client';
    socket.setNoDelay?.(true);
    // A client gone in the middle of a reply shows as EPIPE/ECONNRESET here: that ends this connection only.
    socket.on('error', (err) => this.logger.debug(`NBD connection from ${this.#peer}: ${describeSystemError(err)}`));
  }

  async serve(): Promise<void> {
    try {
      const negotiated = await new Handshake(this.#handshakeIo(), this.exports).run();
      if (!negotiated) return;
      this.logger.debug(`NBD client ${this.#peer} opened export "${negotiated.source.name}"`);
      this.#transmission = new Transmission(this.#transmissionIo(), negotiated, this.options.maxInFlight ?? 16);
      await this.#transmission.run();
    } catch (err) {
      if (!(err instanceof ConnectionClosed)) this.logger.error(`NBD connection from ${this.#peer} failed: ${(err as Error)?.stack ?? err}`);
      await this.#transmission?.drain();
    } finally {
      this.#end();
    }
  }

  /** Takes no more requests, waits up to `graceMs` for those in flight, then closes. */
  async shutdown(graceMs: number): Promise<void> {
    if (!this.#transmission) return this.#destroy('the server is shutting down');
    this.#transmission.stop();
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
    await Promise.race([this.#transmission.drain(), grace]);
    clearTimeout(timer);
    this.#destroy('the server is shutting down');
  }

  #handshakeIo() {
    const secureContext = this.options.tls;
    return {
      read: (length: number) => this.#reader.read(length),
      write: (data: Buffer) => this.#write(data),
      startTls: secureContext && (() => this.#startTls(secureContext)),
      destroy: (reason: string) => this.#destroy(reason),
    };
  }

  #transmissionIo() {
    return {
      read: (length: number) => this.#reader.read(length),
      write: (data: Buffer | readonly Buffer[]) => this.#write(data),
      destroy: (reason: string) => this.#destroy(reason),
      logError: (message: string) => this.logger.error(message),
    };
  }

  /** Writes the parts back to back in one go (nothing else can come between them); resolves when handed to the system. */
  #write(data: Buffer | readonly Buffer[]): Promise<void> {
    const parts = Buffer.isBuffer(data) ? [data] : data;
    const stream = this.#stream;
    if (this.#ended || stream.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      stream.cork();
      parts.forEach((part, i) => (i === parts.length - 1 ? stream.write(part, () => resolve()) : stream.write(part)));
      stream.uncork();
    });
  }

  /** NBD_OPT_STARTTLS answered: the same socket now carries TLS, the server's side of the handshake. */
  async #startTls(secureContext: SecureContext): Promise<void> {
    const early = this.#reader.detach();
    if (early.length > 0) this.socket.unshift(early);
    const tlsSocket = new TLSSocket(this.socket, { isServer: true, secureContext });
    tlsSocket.on('error', (err) => this.logger.debug(`NBD TLS connection from ${this.#peer}: ${describeSystemError(err)}`));
    this.#stream = tlsSocket;
    this.#reader = new NbdReader(tlsSocket);
    await new Promise<void>((resolve, reject) => {
      tlsSocket.once('secure', resolve);
      tlsSocket.once('close', () => reject(new ConnectionClosed()));
    });
  }

  #destroy(reason: string): void {
    if (this.#ended) return;
    this.logger.debug(`NBD connection from ${this.#peer} closed: ${reason}`);
    this.#end();
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    // end() first: replies already queued still go out (after NBD_CMD_DISC, NBD_OPT_ABORT's ACK).
    this.#stream.end();
    const timer = setTimeout(() => this.#stream.destroy(), 1000);
    timer.unref();
    this.#stream.once('close', () => clearTimeout(timer));
  }
}

/**
 * Listens; with `umask`, the socket file is made under it. `listen` binds the socket before it
 * returns, so the umask is the process's only for that call: never across an await, while other
 * work of the process (a file restore in the daemon) creates files.
 */
function listenOn(server: Server, options: { path: string } | { host: string; port: number }, shown: string, umask?: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new NbdServeError(`Cannot listen on ${shown}: ${describeSystemError(err)}`, { cause: err })));
    const previous = umask === undefined ? undefined : process.umask(umask);
    try {
      server.listen(options, () => resolve());
    } finally {
      if (previous !== undefined) process.umask(previous);
    }
  });
}

/** A socket file left by a server that died is removed; one a live server listens on, or any other file, is refused. */
async function removeStaleSocket(path: string): Promise<void> {
  const stat = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new NbdServeError(`Cannot use ${path} as the socket: ${describeSystemError(err)}`, { cause: err });
  });
  if (!stat) return;
  if (!stat.isSocket()) throw new NbdServeError(`${path} exists and is not a socket: choose another --socket path`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new NbdServeError(`${path} is in use: another server listens on it`);
  await rm(path, { force: true });
}
