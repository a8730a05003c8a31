import type { Duplex } from 'node:stream';

/** The peer closed the connection (or it failed) before the bytes a read waited for came. */
export class ConnectionClosed extends Error {
  constructor(cause?: unknown) {
    super('The connection closed', { cause });
  }
}

/** Above this many bytes received but not yet read, the socket is paused (a client sending faster than we serve). */
const HIGH_WATER = 4 * 1024 * 1024;

/**
 * Reads exact byte counts from a stream, as the NBD protocol's fixed-size fields need. One
 * read waits at a time (the protocol is read strictly in order). `detach()` hands what is
 * buffered back, so the stream can be wrapped in TLS after NBD_OPT_STARTTLS.
 */
export class NbdReader {
  #chunks: Buffer[] = [];
  #buffered = 0;
  #waiting: { length: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  #closed: Error | undefined;
  readonly #onData = (chunk: Buffer) => this.#push(chunk);
  readonly #onEnd = () => this.#close(new ConnectionClosed());
  readonly #onError = (err: Error) => this.#close(new ConnectionClosed(err));

  constructor(private readonly stream: Duplex) {
    stream.on('data', this.#onData);
    stream.on('end', this.#onEnd);
    stream.on('close', this.#onEnd);
    stream.on('error', this.#onError);
  }

  /** Exactly `length` bytes; rejects with ConnectionClosed when the stream ends first. */
  read(length: number): Promise<Buffer> {
    if (this.#waiting) throw new Error('NbdReader: one read at a time');
    if (this.#buffered >= length) return Promise.resolve(this.#take(length));
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => {
      this.#waiting = { length, resolve, reject };
      this.stream.resume();
    });
  }

  /** Stops reading the stream; returns the bytes received and not yet read. */
  detach(): Buffer {
    this.stream.off('data', this.#onData);
    this.stream.off('end', this.#onEnd);
    this.stream.off('close', this.#onEnd);
    this.stream.off('error', this.#onError);
    this.stream.pause();
    return this.#take(this.#buffered);
  }

  #push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const waiting = this.#waiting;
    if (waiting && this.#buffered >= waiting.length) {
      this.#waiting = undefined;
      waiting.resolve(this.#take(waiting.length));
    }
    if (this.#buffered > HIGH_WATER && !(this.#waiting && this.#waiting.length > this.#buffered)) this.stream.pause();
  }

  #take(length: number): Buffer {
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#buffered);
    this.#chunks = length < all.length ? [all.subarray(length)] : [];
    this.#buffered -= length;
    return all.subarray(0, length);
  }

  #close(err: Error): void {
    this.#closed ??= err;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.reject(this.#closed);
  }
}
