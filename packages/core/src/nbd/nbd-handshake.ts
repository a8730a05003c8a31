import type { ExportSource } from './export-source.js';
import * as P from './nbd-protocol.js';

/** What the client and the server agreed on in the handshake, for the transmission phase. */
export interface Negotiated {
  source: ExportSource;
  structuredReplies: boolean;
  /** The id of `base:allocation`, when the client selected it for this export; else NBD_CMD_BLOCK_STATUS is refused. */
  allocationContextId: number | undefined;
}

/** The connection as the handshake sees it. */
export interface HandshakeIo {
  read(length: number): Promise<Buffer>;
  write(data: Buffer): Promise<void>;
  /** Undefined: the server has no TLS certificate (STARTTLS is refused with NBD_REP_ERR_POLICY). */
  startTls: (() => Promise<void>) | undefined;
  /** Closes the connection at once (a hard disconnect). */
  destroy(reason: string): void;
}

/** The id `base:allocation` gets from NBD_OPT_SET_META_CONTEXT (ids are ours to choose; the client treats them as opaque). */
const ALLOCATION_CONTEXT_ID = 1;

/** The option's data does not parse (NBD_REP_ERR_INVALID). */
class InvalidOption extends Error {}

/**
 * The fixed newstyle handshake, server side: greets the client, answers its options until it
 * picks an export (NBD_OPT_GO or NBD_OPT_EXPORT_NAME), and returns what was agreed.
 * Undefined: the client aborted, or was disconnected for breaking the protocol.
 */
export class Handshake {
  #structuredReplies = false;
  #metaContext: { exportName: string; id: number } | undefined;
  #noZeroes = false;
  #tlsDone = false;

  constructor(
    private readonly io: HandshakeIo,
    private readonly exports: ReadonlyMap<string, ExportSource>,
  ) {}

  async run(): Promise<Negotiated | undefined> {
    const greeting = Buffer.alloc(18);
    greeting.writeBigUInt64BE(P.NBD_MAGIC, 0);
    greeting.writeBigUInt64BE(P.NBD_IHAVEOPT, 8);
    greeting.writeUInt16BE(P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES, 16);
    await this.io.write(greeting);
    const clientFlags = (await this.io.read(4)).readUInt32BE(0);
    if (clientFlags & ~(P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES)) return this.#hardDisconnect(`unknown client flags 0x${clientFlags.toString(16)}`);
    this.#noZeroes = (clientFlags & P.NBD_FLAG_C_NO_ZEROES) !== 0;
    for (;;) {
      const header = await this.io.read(16);
      if (header.readBigUInt64BE(0) !== P.NBD_IHAVEOPT) return this.#hardDisconnect('an option without the IHAVEOPT magic');
      const option = header.readUInt32BE(8);
      const length = header.readUInt32BE(12);
      if (length > P.MAX_OPTION_LENGTH) return this.#hardDisconnect(`option ${option} with ${length} bytes of data`);
      const data = length > 0 ? await this.io.read(length) : Buffer.alloc(0);
      const outcome = await this.#answer(option, data);
      if (outcome !== 'continue') return outcome;
    }
  }

  /** Answers one option: 'continue' for more options, the agreement, or undefined (the session ends). */
  async #answer(option: number, data: Buffer): Promise<Negotiated | undefined | 'continue'> {
    if (option === P.NBD_OPT_EXPORT_NAME) return this.#exportName(data.toString('utf8'));
    if (option === P.NBD_OPT_ABORT) {
      await this.#reply(option, P.NBD_REP_ACK);
      this.io.destroy('the client aborted the handshake');
      return undefined;
    }
    // FORCEDTLS: with a certificate, nothing but STARTTLS (and ABORT) before TLS.
    if (this.io.startTls && !this.#tlsDone && option !== P.NBD_OPT_STARTTLS) {
      await this.#reply(option, P.NBD_REP_ERR_TLS_REQD, 'This server requires TLS: send NBD_OPT_STARTTLS first');
      return 'continue';
    }
    try {
      return await this.#answerOption(option, data);
    } catch (err) {
      if (!(err instanceof InvalidOption)) throw err;
      await this.#reply(option, P.NBD_REP_ERR_INVALID, err.message);
      return 'continue';
    }
  }

  async #answerOption(option: number, data: Buffer): Promise<Negotiated | 'continue'> {
    switch (option) {
      case P.NBD_OPT_LIST:
        await this.#list(data);
        return 'continue';
      case P.NBD_OPT_STARTTLS:
        await this.#startTls(data);
        return 'continue';
      case P.NBD_OPT_INFO:
      case P.NBD_OPT_GO:
        return this.#infoOrGo(option, data);
      case P.NBD_OPT_STRUCTURED_REPLY:
        if (data.length > 0) throw new InvalidOption('NBD_OPT_STRUCTURED_REPLY takes no data');
        if (this.#structuredReplies) throw new InvalidOption('Structured replies are already negotiated');
        this.#structuredReplies = true;
        await this.#reply(option, P.NBD_REP_ACK);
        return 'continue';
      case P.NBD_OPT_LIST_META_CONTEXT:
      case P.NBD_OPT_SET_META_CONTEXT:
        await this.#metaContexts(option, data);
        return 'continue';
      default:
        await this.#reply(option, P.NBD_REP_ERR_UNSUP, `Option ${option} is not supported by this server`);
        return 'continue';
    }
  }

  /** NBD_OPT_EXPORT_NAME cannot answer an error: an unknown export ends the session. */
  async #exportName(name: string): Promise<Negotiated | undefined> {
    const source = this.exports.get(name);
    if (!source) return this.#hardDisconnect(`NBD_OPT_EXPORT_NAME of an unknown export "${name}"`);
    if (this.io.startTls && !this.#tlsDone) return this.#hardDisconnect('NBD_OPT_EXPORT_NAME before STARTTLS on a server that requires TLS');
    const reply = Buffer.alloc(this.#noZeroes ? 10 : 134);
    reply.writeBigUInt64BE(BigInt(source.size), 0);
    reply.writeUInt16BE(this.#transmissionFlags(source), 8);
    await this.io.write(reply);
    return this.#agreement(source);
  }

  async #list(data: Buffer): Promise<void> {
    if (data.length > 0) throw new InvalidOption('NBD_OPT_LIST takes no data');
    for (const source of this.exports.values()) {
      const name = Buffer.from(source.name, 'utf8');
      const length = Buffer.alloc(4);
      length.writeUInt32BE(name.length, 0);
      await this.#reply(P.NBD_OPT_LIST, P.NBD_REP_SERVER, Buffer.concat([length, name, Buffer.from(source.description, 'utf8')]));
    }
    await this.#reply(P.NBD_OPT_LIST, P.NBD_REP_ACK);
  }

  async #startTls(data: Buffer): Promise<void> {
    if (!this.io.startTls) {
      await this.#reply(P.NBD_OPT_STARTTLS, P.NBD_REP_ERR_POLICY, 'TLS is not configured on this server (cairn serve --tls-cert/--tls-key)');
      return;
    }
    if (data.length > 0) throw new InvalidOption('NBD_OPT_STARTTLS takes no data');
    if (this.#tlsDone) throw new InvalidOption('TLS is already running');
    await this.#reply(P.NBD_OPT_STARTTLS, P.NBD_REP_ACK);
    await this.io.startTls();
    this.#tlsDone = true;
    // Nothing negotiated in clear text carries over into TLS.
    this.#structuredReplies = false;
    this.#metaContext = undefined;
  }

  async #infoOrGo(option: number, data: Buffer): Promise<Negotiated | 'continue'> {
    const request = new OptionData(data);
    const name = request.string(request.uint32(), 'export name');
    const requests = Array.from({ length: request.uint16() }, () => request.uint16());
    request.end();
    const source = this.exports.get(name);
    if (!source) {
      await this.#reply(option, P.NBD_REP_ERR_UNKNOWN, `No export named "${name}" (NBD_OPT_LIST lists them)`);
      return 'continue';
    }
    for (const info of this.#infoReplies(source, requests)) await this.#reply(option, P.NBD_REP_INFO, info);
    await this.#reply(option, P.NBD_REP_ACK);
    return option === P.NBD_OPT_GO ? this.#agreement(source) : 'continue';
  }

  /** NBD_INFO_EXPORT always; the name and description when asked; the block sizes always (they are the defaults, said out loud). */
  #infoReplies(source: ExportSource, requests: number[]): Buffer[] {
    const exportInfo = Buffer.alloc(12);
    exportInfo.writeUInt16BE(P.NBD_INFO_EXPORT, 0);
    exportInfo.writeBigUInt64BE(BigInt(source.size), 2);
    exportInfo.writeUInt16BE(this.#transmissionFlags(source), 10);
    const blockSize = Buffer.alloc(14);
    blockSize.writeUInt16BE(P.NBD_INFO_BLOCK_SIZE, 0);
    blockSize.writeUInt32BE(P.MIN_BLOCK_SIZE, 2);
    blockSize.writeUInt32BE(P.PREFERRED_BLOCK_SIZE, 6);
    blockSize.writeUInt32BE(P.MAX_PAYLOAD, 10);
    const replies = [exportInfo, blockSize];
    const text = (type: number, value: string) => Buffer.concat([uint16(type), Buffer.from(value, 'utf8')]);
    if (requests.includes(P.NBD_INFO_NAME)) replies.push(text(P.NBD_INFO_NAME, source.name));
    if (requests.includes(P.NBD_INFO_DESCRIPTION)) replies.push(text(P.NBD_INFO_DESCRIPTION, source.description));
    return replies;
  }

  async #metaContexts(option: number, data: Buffer): Promise<void> {
    const selecting = option === P.NBD_OPT_SET_META_CONTEXT;
    // Setting replaces what was set before, even when it fails.
    if (selecting) this.#metaContext = undefined;
    const request = new OptionData(data);
    const name = request.string(request.uint32(), 'export name');
    const queries = Array.from({ length: request.uint32() }, () => request.string(request.uint32(), 'query'));
    request.end();
    if (selecting && !this.#structuredReplies) throw new InvalidOption('Negotiate structured replies (NBD_OPT_STRUCTURED_REPLY) before metadata contexts');
    if (!this.exports.has(name)) {
      await this.#reply(option, P.NBD_REP_ERR_UNKNOWN, `No export named "${name}"`);
      return;
    }
    if (queries.some((query) => !query.includes(':'))) throw new InvalidOption('A metadata context query starts with a namespace and a colon');
    const listAll = !selecting && (queries.length === 0 || queries.includes('base:'));
    if (listAll || queries.includes(P.BASE_ALLOCATION)) {
      const id = selecting ? ALLOCATION_CONTEXT_ID : 0;
      if (selecting) this.#metaContext = { exportName: name, id };
      await this.#reply(option, P.NBD_REP_META_CONTEXT, Buffer.concat([uint32(id), Buffer.from(P.BASE_ALLOCATION)]));
    }
    await this.#reply(option, P.NBD_REP_ACK);
  }

  #transmissionFlags(source: ExportSource): number {
    return transmissionFlags(source, this.#structuredReplies);
  }

  #agreement(source: ExportSource): Negotiated {
    const context = this.#metaContext?.exportName === source.name ? this.#metaContext.id : undefined;
    return { source, structuredReplies: this.#structuredReplies, allocationContextId: context };
  }

  #hardDisconnect(reason: string): undefined {
    this.io.destroy(reason);
    return undefined;
  }

  async #reply(option: number, type: number, data: Buffer | string = Buffer.alloc(0)): Promise<void> {
    const payload = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const header = Buffer.alloc(20);
    header.writeBigUInt64BE(P.NBD_REP_MAGIC, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(type, 12);
    header.writeUInt32BE(payload.length, 16);
    await this.io.write(Buffer.concat([header, payload]));
  }
}

/**
 * What the server offers on an export. Read-only exports allow many connections
 * (CAN_MULTI_CONN: nothing to keep coherent); writable ones take writes, zeroing, trim and FUA.
 */
export function transmissionFlags(source: ExportSource, structuredReplies: boolean): number {
  let flags = P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_SEND_FLUSH | P.NBD_FLAG_SEND_CACHE;
  if (structuredReplies) flags |= P.NBD_FLAG_SEND_DF;
  if (isWritable(source)) flags |= P.NBD_FLAG_SEND_WRITE_ZEROES | P.NBD_FLAG_SEND_TRIM | P.NBD_FLAG_SEND_FUA;
  else flags |= P.NBD_FLAG_READ_ONLY | P.NBD_FLAG_CAN_MULTI_CONN;
  return flags;
}

/** Writable and able to write: an export that says it is writable but has no `write` is served read-only. */
export function isWritable(source: ExportSource): boolean {
  return source.writable && typeof source.write === 'function';
}

/** Reads an option's data field by field; running past its end is NBD_REP_ERR_INVALID. */
class OptionData {
  #offset = 0;
  constructor(private readonly data: Buffer) {}

  uint32(): number {
    this.#need(4, 'a length');
    const value = this.data.readUInt32BE(this.#offset);
    this.#offset += 4;
    return value;
  }

  uint16(): number {
    this.#need(2, 'a count');
    const value = this.data.readUInt16BE(this.#offset);
    this.#offset += 2;
    return value;
  }

  string(length: number, what: string): string {
    this.#need(length, `the ${what}`);
    const value = this.data.toString('utf8', this.#offset, this.#offset + length);
    this.#offset += length;
    return value;
  }

  end(): void {
    if (this.#offset !== this.data.length) throw new InvalidOption(`${this.data.length - this.#offset} bytes left over in the option's data`);
  }

  #need(length: number, what: string): void {
    if (this.#offset + length > this.data.length) throw new InvalidOption(`The option's data ends before ${what}`);
  }
}

function uint16(value: number): Buffer {
  const buffer = Buffer.alloc(2);
  buffer.writeUInt16BE(value, 0);
  return buffer;
}

function uint32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32BE(value, 0);
  return buffer;
}
