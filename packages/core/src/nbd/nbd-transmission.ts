import type { ExportExtent, ExportSource } from './export-source.js';
import { isWritable, type Negotiated } from './nbd-handshake.js';
import * as P from './nbd-protocol.js';

/** One request of the transmission phase. */
interface Request {
  flags: number;
  type: number;
  cookie: bigint;
  offset: number;
  length: number;
  /** NBD_CMD_WRITE's data. */
  data?: Buffer;
}

/** A request answered with an error value (and a message, with structured replies). */
class RequestError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

/** The connection as the transmission phase sees it. */
export interface TransmissionIo {
  read(length: number): Promise<Buffer>;
  /** Writes one whole reply (its parts back to back); resolves once it is handed to the system (or the connection is gone). */
  write(data: Buffer | readonly Buffer[]): Promise<void>;
  destroy(reason: string): void;
  /** Logs a failure of the export (a read error): the request gets NBD_EIO, the connection goes on. */
  logError(message: string): void;
}

/** Flags each command may carry (FUA on any: some clients set it everywhere, and the spec tells servers to accept it). */
const ALLOWED_FLAGS: Record<number, number> = {
  [P.NBD_CMD_READ]: P.NBD_CMD_FLAG_FUA | P.NBD_CMD_FLAG_DF,
  [P.NBD_CMD_WRITE]: P.NBD_CMD_FLAG_FUA,
  [P.NBD_CMD_DISC]: P.NBD_CMD_FLAG_FUA,
  [P.NBD_CMD_FLUSH]: P.NBD_CMD_FLAG_FUA,
  [P.NBD_CMD_TRIM]: P.NBD_CMD_FLAG_FUA,
  [P.NBD_CMD_CACHE]: P.NBD_CMD_FLAG_FUA,
  [P.NBD_CMD_WRITE_ZEROES]: P.NBD_CMD_FLAG_FUA | P.NBD_CMD_FLAG_NO_HOLE,
  [P.NBD_CMD_BLOCK_STATUS]: P.NBD_CMD_FLAG_FUA | P.NBD_CMD_FLAG_REQ_ONE,
};

/**
 * The transmission phase: reads requests in order and answers them concurrently, at most
 * `maxInFlight` at a time; each reply is written whole, so replies never interleave.
 */
export class Transmission {
  #inFlight = new Set<Promise<void>>();
  #stopping = false;
  readonly #source: ExportSource;

  constructor(
    private readonly io: TransmissionIo,
    private readonly negotiated: Negotiated,
    private readonly maxInFlight: number,
  ) {
    this.#source = negotiated.source;
  }

  /** Serves requests until NBD_CMD_DISC, the end of the connection, or `stop()`. */
  async run(): Promise<void> {
    while (!this.#stopping) {
      const request = await this.#readRequest();
      if (!request) break;
      if (request.type === P.NBD_CMD_DISC) break;
      while (this.#inFlight.size >= this.maxInFlight) await Promise.race(this.#inFlight);
      const answered = this.#answer(request).finally(() => this.#inFlight.delete(answered));
      this.#inFlight.add(answered);
    }
    await this.drain();
  }

  /** Takes no more requests (the server is shutting down); `drain()` then waits for those in flight. */
  stop(): void {
    this.#stopping = true;
  }

  async drain(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  /** The next request, or undefined when the connection must end (a protocol violation). */
  async #readRequest(): Promise<Request | undefined> {
    const header = await this.io.read(28);
    if (header.readUInt32BE(0) !== P.NBD_REQUEST_MAGIC) {
      this.io.destroy(`a request without the request magic (0x${header.readUInt32BE(0).toString(16)})`);
      return undefined;
    }
    const request: Request = {
      flags: header.readUInt16BE(4),
      type: header.readUInt16BE(6),
      cookie: header.readBigUInt64BE(8),
      offset: Number(header.readBigUInt64BE(16)),
      length: header.readUInt32BE(24),
    };
    if (request.type === P.NBD_CMD_WRITE) {
      // The data follows whatever we answer: it must be read to stay in step, unless it is absurd.
      if (request.length > P.MAX_PAYLOAD) {
        this.io.destroy(`a write of ${request.length} bytes, more than the ${P.MAX_PAYLOAD} advertised`);
        return undefined;
      }
      request.data = await this.io.read(request.length);
    }
    return request;
  }

  async #answer(request: Request): Promise<void> {
    try {
      this.#checkFlags(request);
      if (request.type === P.NBD_CMD_READ) return await this.#read(request);
      if (request.type === P.NBD_CMD_BLOCK_STATUS) return await this.#blockStatus(request);
      await this.#command(request);
      await this.io.write(simpleReply(request.cookie, 0));
    } catch (err) {
      const failure = err instanceof RequestError ? err : this.#exportFailure(request, err);
      await this.io.write(this.negotiated.structuredReplies ? errorChunk(request.cookie, failure) : simpleReply(request.cookie, failure.errno));
    }
  }

  #exportFailure(request: Request, err: unknown): RequestError {
    const message = `${commandName(request.type)} of ${request.length} bytes at ${request.offset} on export "${this.#source.name}" failed: ${(err as Error)?.message ?? err}`;
    this.io.logError(message);
    return new RequestError(P.NBD_EIO, message);
  }

  #checkFlags(request: Request): void {
    const allowed = ALLOWED_FLAGS[request.type];
    if (allowed === undefined) throw new RequestError(P.NBD_EINVAL, `Unknown command ${request.type}`);
    const dontFragment = request.flags & P.NBD_CMD_FLAG_DF;
    if (request.flags & ~allowed || (dontFragment && !this.negotiated.structuredReplies)) {
      throw new RequestError(P.NBD_EINVAL, `Flags 0x${request.flags.toString(16)} are not valid on ${commandName(request.type)}`);
    }
  }

  /** Everything but READ and BLOCK_STATUS: answered with an empty reply when this returns. */
  async #command(request: Request): Promise<void> {
    const source = this.#source;
    switch (request.type) {
      case P.NBD_CMD_FLUSH:
        return source.flush?.();
      case P.NBD_CMD_CACHE:
        this.#checkBounds(request, P.NBD_EINVAL);
        return source.prefetch(request.offset, request.length);
      case P.NBD_CMD_WRITE:
      case P.NBD_CMD_WRITE_ZEROES:
      case P.NBD_CMD_TRIM:
        return this.#write(request);
    }
  }

  async #write(request: Request): Promise<void> {
    const source = this.#source;
    if (!isWritable(source)) throw new RequestError(P.NBD_EPERM, `Export "${source.name}" is read-only (serve it with --overlay to take writes)`);
    this.#checkBounds(request, request.type === P.NBD_CMD_TRIM ? P.NBD_EINVAL : P.NBD_ENOSPC);
    if (request.type === P.NBD_CMD_WRITE) await source.write!(request.offset, request.data!);
    else if (request.type === P.NBD_CMD_WRITE_ZEROES) await this.#writeZeroes(request.offset, request.length);
    // NBD_CMD_TRIM is a hint the spec lets a server ignore: discarding would only grow the overlay.
    if (request.flags & P.NBD_CMD_FLAG_FUA) await source.flush?.();
  }

  async #writeZeroes(offset: number, length: number): Promise<void> {
    const source = this.#source;
    if (source.writeZeroes) return source.writeZeroes(offset, length);
    for (let done = 0; done < length; done += P.MAX_PAYLOAD) await source.write!(offset + done, Buffer.alloc(Math.min(P.MAX_PAYLOAD, length - done)));
  }

  #checkBounds(request: Request, errno: number): void {
    if (request.offset + request.length > this.#source.size) {
      throw new RequestError(errno, `${commandName(request.type)} of ${request.length} bytes at ${request.offset} goes past the end of the export (${this.#source.size} bytes)`);
    }
  }

  async #read(request: Request): Promise<void> {
    this.#checkBounds(request, P.NBD_EINVAL);
    if (request.length > P.MAX_PAYLOAD) throw new RequestError(P.NBD_EINVAL, `A read of ${request.length} bytes is more than the ${P.MAX_PAYLOAD} bytes advertised`);
    const { cookie, offset, length } = request;
    if (!this.negotiated.structuredReplies) {
      const data = length > 0 ? await this.#source.read(offset, length) : Buffer.alloc(0);
      if (data.length !== length) throw new Error(`the export returned ${data.length} bytes instead of ${length}`);
      return this.io.write([simpleReply(cookie, 0), data]);
    }
    if (length === 0) return this.io.write(structuredChunk(cookie, P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_NONE, Buffer.alloc(0)));
    const runs = request.flags & P.NBD_CMD_FLAG_DF ? [{ offset, length, zero: false }] : await this.#readRuns(offset, length);
    const chunks = await Promise.all(runs.map((run) => (run.zero ? [holeChunk(cookie, run)] : this.#dataChunk(cookie, run))));
    chunks.push([structuredChunk(cookie, P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_NONE, Buffer.alloc(0))]);
    await this.io.write(chunks.flat());
  }

  /** The read's range cut where it turns from data to zeros, so zeros go as NBD_REPLY_TYPE_OFFSET_HOLE chunks. */
  async #readRuns(offset: number, length: number): Promise<Run[]> {
    const runs: Run[] = [];
    for (const extent of clip(await this.#source.blockStatus(offset, length), offset, length)) {
      const last = runs.at(-1);
      if (last && last.zero === extent.zero) last.length += extent.length;
      else runs.push({ offset: extent.offset, length: extent.length, zero: extent.zero });
    }
    const covered = runs.reduce((sum, run) => sum + run.length, 0);
    // A map that does not cover the range (a broken source) must not leave part of the read unanswered.
    return covered === length && runs[0]?.offset === offset ? runs : [{ offset, length, zero: false }];
  }

  /** An NBD_REPLY_TYPE_OFFSET_DATA chunk as its header and the data (not copied into one buffer). */
  async #dataChunk(cookie: bigint, run: Run): Promise<Buffer[]> {
    const data = await this.#source.read(run.offset, run.length);
    if (data.length !== run.length) throw new Error(`the export returned ${data.length} bytes instead of ${run.length}`);
    const header = structuredChunkHeader(cookie, 0, P.NBD_REPLY_TYPE_OFFSET_DATA, 8 + data.length);
    const offset = Buffer.alloc(8);
    offset.writeBigUInt64BE(BigInt(run.offset), 0);
    return [header, offset, data];
  }

  async #blockStatus(request: Request): Promise<void> {
    const contextId = this.negotiated.allocationContextId;
    if (contextId === undefined) throw new RequestError(P.NBD_EINVAL, 'NBD_CMD_BLOCK_STATUS needs the base:allocation context selected (NBD_OPT_SET_META_CONTEXT)');
    if (request.length === 0) throw new RequestError(P.NBD_EINVAL, 'NBD_CMD_BLOCK_STATUS of zero bytes');
    this.#checkBounds(request, P.NBD_EINVAL);
    let extents = clip(await this.#source.blockStatus(request.offset, request.length), request.offset, request.length);
    if (extents.length === 0) extents = [{ offset: request.offset, length: request.length, hole: false, zero: false }];
    if (request.flags & P.NBD_CMD_FLAG_REQ_ONE) extents = extents.slice(0, 1);
    extents = extents.slice(0, P.MAX_EXTENTS_PER_REPLY);
    const payload = Buffer.alloc(4 + 8 * extents.length);
    payload.writeUInt32BE(contextId, 0);
    extents.forEach((extent, i) => {
      payload.writeUInt32BE(extent.length, 4 + 8 * i);
      payload.writeUInt32BE((extent.hole ? P.NBD_STATE_HOLE : 0) | (extent.zero ? P.NBD_STATE_ZERO : 0), 8 + 8 * i);
    });
    await this.io.write(structuredChunk(request.cookie, P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_BLOCK_STATUS, payload));
  }
}

interface Run {
  offset: number;
  length: number;
  zero: boolean;
}

/** The extents, in order, cut to [offset, offset + length); empty ones dropped. */
function clip(extents: readonly ExportExtent[], offset: number, length: number): ExportExtent[] {
  const end = offset + length;
  const clipped: ExportExtent[] = [];
  let next = offset;
  for (const extent of extents) {
    const start = Math.max(extent.offset, next);
    const stop = Math.min(extent.offset + extent.length, end);
    if (start !== next || stop <= start) continue;
    clipped.push({ ...extent, offset: start, length: stop - start });
    next = stop;
  }
  return clipped;
}

function simpleReply(cookie: bigint, errno: number): Buffer {
  const reply = Buffer.alloc(16);
  reply.writeUInt32BE(P.NBD_SIMPLE_REPLY_MAGIC, 0);
  reply.writeUInt32BE(errno, 4);
  reply.writeBigUInt64BE(cookie, 8);
  return reply;
}

function structuredChunkHeader(cookie: bigint, flags: number, type: number, payloadLength: number): Buffer {
  const header = Buffer.alloc(20);
  header.writeUInt32BE(P.NBD_STRUCTURED_REPLY_MAGIC, 0);
  header.writeUInt16BE(flags, 4);
  header.writeUInt16BE(type, 6);
  header.writeBigUInt64BE(cookie, 8);
  header.writeUInt32BE(payloadLength, 16);
  return header;
}

function structuredChunk(cookie: bigint, flags: number, type: number, payload: Buffer): Buffer {
  return Buffer.concat([structuredChunkHeader(cookie, flags, type, payload.length), payload]);
}

function holeChunk(cookie: bigint, run: Run): Buffer {
  const payload = Buffer.alloc(12);
  payload.writeBigUInt64BE(BigInt(run.offset), 0);
  payload.writeUInt32BE(run.length, 8);
  return structuredChunk(cookie, 0, P.NBD_REPLY_TYPE_OFFSET_HOLE, payload);
}

/** NBD_REPLY_TYPE_ERROR, the last chunk of its reply, with the message for the user (4096 bytes at most). */
function errorChunk(cookie: bigint, error: RequestError): Buffer {
  const message = Buffer.from(error.message, 'utf8').subarray(0, 4096);
  const payload = Buffer.alloc(6 + message.length);
  payload.writeUInt32BE(error.errno, 0);
  payload.writeUInt16BE(message.length, 4);
  message.copy(payload, 6);
  return structuredChunk(cookie, P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_ERROR, payload);
}

const COMMAND_NAMES: Record<number, string> = {
  [P.NBD_CMD_READ]: 'NBD_CMD_READ',
  [P.NBD_CMD_WRITE]: 'NBD_CMD_WRITE',
  [P.NBD_CMD_DISC]: 'NBD_CMD_DISC',
  [P.NBD_CMD_FLUSH]: 'NBD_CMD_FLUSH',
  [P.NBD_CMD_TRIM]: 'NBD_CMD_TRIM',
  [P.NBD_CMD_CACHE]: 'NBD_CMD_CACHE',
  [P.NBD_CMD_WRITE_ZEROES]: 'NBD_CMD_WRITE_ZEROES',
  [P.NBD_CMD_BLOCK_STATUS]: 'NBD_CMD_BLOCK_STATUS',
};

function commandName(type: number): string {
  return COMMAND_NAMES[type] ?? `command ${type}`;
}
