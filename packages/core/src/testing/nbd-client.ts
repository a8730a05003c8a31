import { createConnection, type Socket } from 'node:net';
import { NbdReader } from '../nbd/nbd-reader.js';
import * as P from '../nbd/nbd-protocol.js';

export interface NbdOptionReply {
  option: number;
  type: number;
  data: Buffer;
}

export interface NbdRequest {
  type: number;
  offset: number;
  length: number;
  cookie: bigint;
  flags?: number;
  /** NBD_CMD_WRITE's data (length is taken from it). */
  data?: Buffer;
}

/** A simple reply, or one chunk of a structured reply. */
export type NbdReply =
  | { kind: 'simple'; cookie: bigint; error: number; data: Buffer }
  | { kind: 'structured'; cookie: bigint; flags: number; type: number; payload: Buffer };

/** What a structured reply to a read adds up to. */
export interface NbdReadResult {
  data: Buffer;
  error: number;
  message: string;
  chunkTypes: number[];
}

/**
 * A raw NBD client for tests: every field of the protocol by hand, so tests can also send
 * what real clients never do (unknown options, reads past the end, a disconnect mid-reply).
 */
export class NbdTestClient {
  readonly #reader: NbdReader;
  #flagsSent = false;
  handshakeFlags = 0;

  private constructor(readonly socket: Socket) {
    this.#reader = new NbdReader(socket);
  }

  /** Connects and reads the server's greeting (NBDMAGIC, IHAVEOPT, handshake flags). */
  static async connect(address: { socket: string } | { host: string; port: number }): Promise<NbdTestClient> {
    const socket = 'socket' in address ? createConnection(address.socket) : createConnection(address.port, address.host);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const client = new NbdTestClient(socket);
    const greeting = await client.read(18);
    if (greeting.readBigUInt64BE(0) !== P.NBD_MAGIC || greeting.readBigUInt64BE(8) !== P.NBD_IHAVEOPT) throw new Error(`Not a newstyle NBD greeting: ${greeting.toString('hex')}`);
    client.handshakeFlags = greeting.readUInt16BE(16);
    return client;
  }

  read(length: number): Promise<Buffer> {
    return this.#reader.read(length);
  }

  write(data: Buffer): void {
    this.socket.write(data);
  }

  sendClientFlags(flags = P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES): void {
    this.#flagsSent = true;
    this.write(u32(flags));
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0)): void {
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(P.NBD_IHAVEOPT, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(data.length, 12);
    this.write(Buffer.concat([header, data]));
  }

  async readOptionReply(): Promise<NbdOptionReply> {
    const header = await this.read(20);
    if (header.readBigUInt64BE(0) !== P.NBD_REP_MAGIC) throw new Error(`Not an option reply: ${header.toString('hex')}`);
    const length = header.readUInt32BE(16);
    return { option: header.readUInt32BE(8), type: header.readUInt32BE(12), data: length > 0 ? await this.read(length) : Buffer.alloc(0) };
  }

  /** Sends an option and reads its replies up to the final one (an ACK or an error). */
  async option(option: number, data?: Buffer): Promise<NbdOptionReply[]> {
    this.sendOption(option, data);
    const replies: NbdOptionReply[] = [];
    for (;;) {
      const reply = await this.readOptionReply();
      replies.push(reply);
      if (![P.NBD_REP_SERVER, P.NBD_REP_INFO, P.NBD_REP_META_CONTEXT].includes(reply.type)) return replies;
    }
  }

  /** Handshake to transmission with NBD_OPT_GO (sending the client flags if not sent yet), optionally structured replies and `base:allocation` first. */
  async go(name: string, options: { structured?: boolean; allocation?: boolean } = {}): Promise<{ size: number; flags: number; replies: NbdOptionReply[] }> {
    if (!this.#flagsSent) this.sendClientFlags();
    if (options.structured || options.allocation) await this.expectAck(P.NBD_OPT_STRUCTURED_REPLY);
    if (options.allocation) await this.expectAck(P.NBD_OPT_SET_META_CONTEXT, metaContextData(name, [P.BASE_ALLOCATION]));
    const replies = await this.option(P.NBD_OPT_GO, goData(name, [P.NBD_INFO_NAME, P.NBD_INFO_DESCRIPTION, P.NBD_INFO_BLOCK_SIZE]));
    if (replies.at(-1)!.type !== P.NBD_REP_ACK) throw new Error(`NBD_OPT_GO of "${name}" failed: type 0x${replies.at(-1)!.type.toString(16)} ${replies.at(-1)!.data.toString()}`);
    const info = replies.find((r) => r.type === P.NBD_REP_INFO && r.data.readUInt16BE(0) === P.NBD_INFO_EXPORT)!;
    return { size: Number(info.data.readBigUInt64BE(2)), flags: info.data.readUInt16BE(10), replies };
  }

  async expectAck(option: number, data?: Buffer): Promise<NbdOptionReply[]> {
    const replies = await this.option(option, data);
    if (replies.at(-1)!.type !== P.NBD_REP_ACK) throw new Error(`Option ${option} failed: type 0x${replies.at(-1)!.type.toString(16)} ${replies.at(-1)!.data.toString()}`);
    return replies;
  }

  sendRequest(request: NbdRequest): void {
    const header = Buffer.alloc(28);
    header.writeUInt32BE(P.NBD_REQUEST_MAGIC, 0);
    header.writeUInt16BE(request.flags ?? 0, 4);
    header.writeUInt16BE(request.type, 6);
    header.writeBigUInt64BE(request.cookie, 8);
    header.writeBigUInt64BE(BigInt(request.offset), 16);
    header.writeUInt32BE(request.data?.length ?? request.length, 24);
    this.write(request.data ? Buffer.concat([header, request.data]) : header);
  }

  /** The next reply message; `readLength(cookie)` says how many data bytes follow a successful simple reply to that request. */
  async readReply(readLength: (cookie: bigint) => number = () => 0): Promise<NbdReply> {
    const magic = (await this.read(4)).readUInt32BE(0);
    if (magic === P.NBD_SIMPLE_REPLY_MAGIC) {
      const rest = await this.read(12);
      const cookie = rest.readBigUInt64BE(4);
      const error = rest.readUInt32BE(0);
      const length = error === 0 ? readLength(cookie) : 0;
      return { kind: 'simple', cookie, error, data: length > 0 ? await this.read(length) : Buffer.alloc(0) };
    }
    if (magic !== P.NBD_STRUCTURED_REPLY_MAGIC) throw new Error(`Not a reply: magic 0x${magic.toString(16)}`);
    const rest = await this.read(16);
    const length = rest.readUInt32BE(12);
    return { kind: 'structured', flags: rest.readUInt16BE(0), type: rest.readUInt16BE(2), cookie: rest.readBigUInt64BE(4), payload: length > 0 ? await this.read(length) : Buffer.alloc(0) };
  }

  /** Reads the chunks of one structured reply to a read of [offset, offset + length) and puts the data together. */
  async readStructuredRead(offset: number, length: number): Promise<NbdReadResult> {
    const result: NbdReadResult = { data: Buffer.alloc(length), error: 0, message: '', chunkTypes: [] };
    for (;;) {
      const reply = await this.readReply();
      if (reply.kind !== 'structured') throw new Error('A simple reply where a structured one was due');
      result.chunkTypes.push(reply.type);
      applyChunk(result, reply, offset);
      if (reply.flags & P.NBD_REPLY_FLAG_DONE) return result;
    }
  }

  close(): void {
    this.socket.destroy();
  }

  /** Resolves when the server has closed the connection. */
  closed(): Promise<void> {
    if (this.socket.destroyed || this.socket.readableEnded) return Promise.resolve();
    return new Promise((resolve) => this.socket.once('close', () => resolve()));
  }
}

function applyChunk(result: NbdReadResult, reply: Extract<NbdReply, { kind: 'structured' }>, offset: number): void {
  const payload = reply.payload;
  if (reply.type === P.NBD_REPLY_TYPE_OFFSET_DATA) payload.copy(result.data, Number(payload.readBigUInt64BE(0)) - offset, 8);
  else if (reply.type === P.NBD_REPLY_TYPE_OFFSET_HOLE) result.data.fill(0, Number(payload.readBigUInt64BE(0)) - offset, Number(payload.readBigUInt64BE(0)) - offset + payload.readUInt32BE(8));
  else if (reply.type & 0x8000) {
    result.error = payload.readUInt32BE(0);
    result.message = payload.toString('utf8', 6, 6 + payload.readUInt16BE(4));
  }
}

/** NBD_OPT_GO/NBD_OPT_INFO data: the export name and the information requested. */
export function goData(name: string, infos: number[] = []): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const requests = Buffer.alloc(2 + 2 * infos.length);
  requests.writeUInt16BE(infos.length, 0);
  infos.forEach((info, i) => requests.writeUInt16BE(info, 2 + 2 * i));
  return Buffer.concat([u32(nameBytes.length), nameBytes, requests]);
}

/** NBD_OPT_SET_META_CONTEXT/NBD_OPT_LIST_META_CONTEXT data. */
export function metaContextData(name: string, queries: string[]): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const parts = [u32(nameBytes.length), nameBytes, u32(queries.length)];
  for (const query of queries) parts.push(u32(Buffer.byteLength(query)), Buffer.from(query, 'utf8'));
  return Buffer.concat(parts);
}

function u32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32BE(value, 0);
  return buffer;
}
