import { connect as connectTcp, isIP, type Socket } from 'node:net';
import { connect as connectTls, type ConnectionOptions } from 'node:tls';

/**
 * A GET as the SDK built and signed it (smithy's HttpRequest): exactly what goes on the wire.
 * `path` is already URI-encoded; `query` is not.
 */
export interface SignedGet {
  method: string;
  protocol: string;
  hostname: string;
  port?: number;
  path: string;
  query?: Record<string, string | string[] | null | undefined>;
  headers: Record<string, string>;
}

/** Why the last direct read gave up (for tests and diagnostics); the caller then reads through the SDK. */
export type FallbackReason = string;

const HEADER_LIMIT = 16 * 1024;
/** Servers close idle keep-alive connections (AWS after about 20 s): older idle sockets are not reused. */
const IDLE_REUSE_MS = 4_000;
const HEADER_END = Buffer.from('\r\n\r\n');

/**
 * Ranged GETs of a signed request read by the kernel straight into the caller's buffers.
 *
 * The SDK's way (Node's http client, a Readable per response, an async iterator over it) gives
 * every 64 KiB socket read a new Buffer and copies it once more into the restore's chunk slots;
 * on a restore from S3 that was 1.5 s of garbage collection and 1.4 s of parsing and copying in
 * the main thread for 850 MB. Here each connection reads with `onread`: response headers into a
 * scratch buffer of its own, the body into the slots themselves. Only the answer the caller asked
 * for is handled (206 with the exact Content-Range and Content-Length, no transfer coding): any
 * other answer, a network error or a timeout resolves to a reason, and the caller does the read
 * again through the SDK, which reports errors, retries and parses error bodies as before.
 */
export class DirectReads {
  readonly #idle = new Map<string, Connection[]>();
  readonly #open = new Set<Connection>();
  #closed = false;

  /** `tls`: extra trust for HTTPS (tests); by default Node's CAs (and NODE_EXTRA_CA_CERTS), as the SDK's agent. */
  constructor(
    private readonly timeoutMs: number,
    private readonly tls: { ca?: Buffer } = {},
  ) {}

  /**
   * Sends `request` (a GET with a Range of `offset` and the buffers' total length) and fills
   * `into` from the response; null when it did, else why not (the buffers' contents are then
   * undefined).
   */
  async readInto(request: SignedGet, offset: number, into: readonly Uint8Array[]): Promise<FallbackReason | null> {
    if (this.#closed) return 'closed';
    if (request.protocol !== 'http:' && request.protocol !== 'https:') return `protocol ${request.protocol}`;
    const head = requestHead(request);
    if (typeof head !== 'string') return head.reason;
    const origin = `${request.protocol}//${request.hostname}:${request.port ?? (request.protocol === 'https:' ? 443 : 80)}`;
    const connection = this.#take(origin) ?? this.#connect(origin, request);
    const length = into.reduce((sum, buffer) => sum + buffer.length, 0);
    const reason = await connection.exchange(head, { offset, length, into }, this.timeoutMs);
    if (reason === null && connection.reusable && !this.#closed) this.#keep(origin, connection);
    else connection.destroy();
    return reason;
  }

  /** Closes every connection (idle or in use: a read in use then gives 'closed' and falls back). */
  close(): void {
    this.#closed = true;
    for (const connection of this.#open) connection.destroy();
    this.#idle.clear();
  }

  #take(origin: string): Connection | undefined {
    const idle = this.#idle.get(origin);
    while (idle?.length) {
      const connection = idle.pop()!;
      if (connection.reusable && Date.now() - connection.idleSince < IDLE_REUSE_MS) return connection;
      connection.destroy();
    }
    return undefined;
  }

  #keep(origin: string, connection: Connection): void {
    connection.idleSince = Date.now();
    let idle = this.#idle.get(origin);
    if (!idle) this.#idle.set(origin, (idle = []));
    idle.push(connection);
  }

  #connect(origin: string, request: SignedGet): Connection {
    const connection = new Connection(request, this.tls, () => {
      this.#open.delete(connection);
      const idle = this.#idle.get(origin);
      const at = idle?.indexOf(connection) ?? -1;
      if (at >= 0) idle!.splice(at, 1);
    });
    this.#open.add(connection);
    return connection;
  }
}

interface Range {
  offset: number;
  length: number;
  into: readonly Uint8Array[];
}

/** One keep-alive connection, one exchange at a time. */
class Connection {
  readonly socket: Socket;
  idleSince = 0;
  reusable = true;
  readonly #scratch = Buffer.allocUnsafe(HEADER_LIMIT);
  #headerBytes = 0;
  #range: Range | undefined;
  #settle: ((reason: FallbackReason | null) => void) | undefined;
  /** -1 while the response's headers are awaited. */
  #bodyLength = -1;
  #received = 0;
  #slot = 0;
  #at = 0;

  constructor(request: SignedGet, tls: { ca?: Buffer }, onClose: () => void) {
    const onread = { buffer: () => this.#nextBuffer(), callback: (count: number) => this.#onRead(count) };
    const port = request.port ?? (request.protocol === 'https:' ? 443 : 80);
    // smithy keeps an IPv6 literal in brackets, as in a URL; sockets take the bare address.
    const host = request.hostname.replace(/^\[(.*)\]$/, '$1');
    this.socket =
      request.protocol === 'https:'
        ? connectTls({ host, port, servername: isIP(host) ? undefined : host, ...tls, onread, noDelay: true } as ConnectionOptions)
        : connectTcp({ host, port, onread, noDelay: true });
    this.socket.on('error', (err) => this.#fail(`connection: ${err.message}`));
    this.socket.on('end', () => {
      this.reusable = false;
      this.#fail('the server closed the connection');
    });
    this.socket.on('timeout', () => this.#fail('no answer in time'));
    this.socket.on('close', () => {
      this.reusable = false;
      this.#fail('the connection closed');
      onClose();
    });
  }

  exchange(head: string, range: Range, timeoutMs: number): Promise<FallbackReason | null> {
    return new Promise((resolve) => {
      this.#range = range;
      this.#settle = resolve;
      this.#headerBytes = 0;
      this.#bodyLength = -1;
      this.socket.ref();
      this.socket.setTimeout(timeoutMs);
      this.socket.write(head);
    });
  }

  destroy(): void {
    this.reusable = false;
    this.socket.destroy();
  }

  /** Where the next socket read goes: the header scratch, or the rest of the current slot. */
  #nextBuffer(): Uint8Array {
    const range = this.#range;
    if (!range || this.#bodyLength < 0) return this.#scratch.subarray(this.#headerBytes);
    return range.into[this.#slot]!.subarray(this.#at);
  }

  #onRead(count: number): boolean {
    if (!this.#range) this.#unexpected();
    else if (this.#bodyLength < 0) this.#onHeaderBytes(count);
    else this.#onBodyBytes(count);
    return true;
  }

  #onHeaderBytes(count: number): void {
    const from = Math.max(0, this.#headerBytes - 3);
    this.#headerBytes += count;
    const end = this.#scratch.subarray(0, this.#headerBytes).indexOf(HEADER_END, from);
    if (end < 0) {
      if (this.#headerBytes >= HEADER_LIMIT) this.#fail('response headers too large');
      return;
    }
    const problem = this.#accept(this.#scratch.toString('latin1', 0, end));
    if (problem) return this.#fail(problem);
    const early = this.#scratch.subarray(end + HEADER_END.length, this.#headerBytes);
    if (early.length > this.#bodyLength) return this.#fail('more bytes than the response held');
    for (let from = 0; from < early.length; ) from += this.#store(early.subarray(from));
    this.#finishIfComplete();
  }

  /** Copies bytes that arrived with the headers into the slots; returns how many it took. */
  #store(bytes: Uint8Array): number {
    const slot = this.#range!.into[this.#slot]!;
    const count = Math.min(bytes.length, slot.length - this.#at);
    slot.set(bytes.subarray(0, count), this.#at);
    this.#advance(count);
    return count;
  }

  #onBodyBytes(count: number): void {
    this.#advance(count);
    this.#finishIfComplete();
  }

  #advance(count: number): void {
    this.#received += count;
    this.#at += count;
    const into = this.#range!.into;
    while (this.#slot < into.length - 1 && this.#at === into[this.#slot]!.length) {
      this.#slot++;
      this.#at = 0;
    }
  }

  #finishIfComplete(): void {
    if (this.#received === this.#bodyLength) this.#done(null);
  }

  /** Checks the status line and headers; a reason when this is not the answer asked for. */
  #accept(text: string): string | null {
    const lines = text.split('\r\n');
    const status = /^HTTP\/1\.([01]) (\d{3})/.exec(lines[0] ?? '');
    if (!status) return `not an HTTP/1.1 response: ${JSON.stringify(lines[0]?.slice(0, 80))}`;
    if (status[2] !== '206') return `status ${status[2]}`;
    // An HTTP/1.0 server closes the connection after its answer unless told otherwise: not reused.
    if (status[1] === '0') this.reusable = false;
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon <= 0) return 'malformed header line';
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const { offset, length } = this.#range!;
    if (headers.has('transfer-encoding')) return `transfer-encoding ${headers.get('transfer-encoding')}`;
    if (headers.get('content-length') !== String(length)) return `content-length ${headers.get('content-length')} for ${length} bytes`;
    if (!headers.get('content-range')?.startsWith(`bytes ${offset}-${offset + length - 1}/`)) return `content-range ${headers.get('content-range')}`;
    if (/(^|,)\s*close\s*($|,)/i.test(headers.get('connection') ?? '')) this.reusable = false;
    this.#bodyLength = length;
    this.#received = 0;
    this.#slot = 0;
    this.#at = 0;
    this.#advance(0); // past empty buffers at the start
    return null;
  }

  #unexpected(): void {
    // Bytes on an idle connection: nothing was asked, so it cannot be trusted for the next answer.
    this.destroy();
  }

  #fail(reason: FallbackReason): void {
    if (!this.#settle) return;
    this.destroy();
    this.#done(reason);
  }

  #done(reason: FallbackReason | null): void {
    const settle = this.#settle;
    this.#range = undefined;
    this.#settle = undefined;
    this.#headerBytes = 0;
    this.#bodyLength = -1;
    if (reason === null) {
      this.socket.setTimeout(0);
      this.socket.unref();
    }
    settle?.(reason);
  }
}

/** The request line and headers, or why they cannot be sent as they are. */
function requestHead(request: SignedGet): string | { reason: string } {
  if (request.method !== 'GET') return { reason: `method ${request.method}` };
  const query = queryString(request.query ?? {});
  const lines = [`GET ${request.path}${query ? `?${query}` : ''} HTTP/1.1`];
  for (const [name, value] of Object.entries(request.headers)) {
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) return { reason: `header ${JSON.stringify(name)} has a line break` };
    lines.push(`${name}: ${value}`);
  }
  if (/[\r\n\s]/.test(request.path)) return { reason: 'the path has white space' };
  if (!Object.keys(request.headers).some((name) => name.toLowerCase() === 'host')) lines.push(`host: ${request.hostname}${request.port ? `:${request.port}` : ''}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** The query as smithy's handler writes it (RFC 3986 escaping; the signature covers its decoded form). */
function queryString(query: Record<string, string | string[] | null | undefined>): string {
  const parts: string[] = [];
  for (const key of Object.keys(query).sort()) {
    const value = query[key];
    const name = escape(key);
    if (value === null || value === undefined) parts.push(name);
    else for (const one of Array.isArray(value) ? value : [value]) parts.push(`${name}=${escape(one)}`);
  }
  return parts.join('&');
}

function escape(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
