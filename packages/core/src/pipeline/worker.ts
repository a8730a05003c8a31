import { parentPort } from 'node:worker_threads';
import { createHash, type Hash } from 'node:crypto';
import type { Codec, CodecModule, CodecRegistration, CodecSettings } from '../codec.js';
import { blobIdOf, open, seal } from '../crypto/crypto.js';
import { CODEC_NONE } from '../repository/format.js';

/*
 * The CPU-heavy per-chunk work, off the main thread: zero detection, keyed hashing,
 * compression, encryption, and the reverse. Chunks arrive in SharedArrayBuffer slots (no
 * copy); sealed output is transferred back. Also keeps one ordered sha256 of a whole image.
 */

export type WorkerRequest =
  | { op: 'init'; encryptionKey: Uint8Array; blobIdKey: Uint8Array; codecs: CodecRegistration[]; writeCodec: CodecSettings; writeCodecId: number }
  | { op: 'hash'; slot: SharedArrayBuffer; length: number }
  | { op: 'seal'; slot: SharedArrayBuffer; length: number }
  | { op: 'sealBytes'; data: Uint8Array }
  | { op: 'open'; sealed: Uint8Array; rawLength: number; id: string; into?: SharedArrayBuffer }
  | { op: 'imageReset'; ranges: ByteRange[] }
  | { op: 'imageUpdate'; slot: SharedArrayBuffer; start: number; length: number; offset: number }
  | { op: 'imageZeros'; length: number; offset: number }
  | { op: 'imageDigest' };

export interface ByteRange {
  offset: number;
  length: number;
}

export interface ImageDigest {
  /** sha256 of the whole image; undefined when not every byte from 0 on was fed in order. */
  image?: string;
  /** sha256 of each range given to `imageReset`, in the same order. */
  ranges: string[];
}

export type WorkerReply =
  | { ok: true; zero?: boolean; id?: Uint8Array; sealed?: Uint8Array; plain?: Uint8Array; digest?: ImageDigest }
  | { ok: false; message: string; kind?: 'damage' | 'missing-codec' };

let encryptionKey: Buffer;
let blobIdKey: Buffer;
let writeCodec: Codec;
let writeCodecId = CODEC_NONE;
const decoders = new Map<number, Codec>();

/**
 * The ordered sha256 of an image, and of chosen ranges of it (partitions), fed in image
 * order. Pieces may skip ahead (a partial restore feeds only its range); the whole-image hash
 * is then void.
 */
class ImageHasher {
  #image: Hash = createHash('sha256');
  #contiguous = true;
  #position = 0;
  #ranges: Array<ByteRange & { hash: Hash; fed: number }> = [];

  reset(ranges: ByteRange[]): void {
    this.#image = createHash('sha256');
    this.#contiguous = true;
    this.#position = 0;
    this.#ranges = ranges.map((r) => ({ ...r, hash: createHash('sha256'), fed: 0 }));
  }

  update(bytes: Uint8Array, offset: number): void {
    if (offset !== this.#position) this.#contiguous = false;
    if (this.#contiguous) this.#image.update(bytes);
    const end = offset + bytes.length;
    for (const range of this.#ranges) {
      const from = Math.max(offset, range.offset + range.fed);
      const to = Math.min(end, range.offset + range.length);
      if (to <= from) continue;
      if (from !== range.offset + range.fed) throw new Error(`range at ${range.offset} was fed out of order`);
      range.hash.update(bytes.subarray(from - offset, to - offset));
      range.fed += to - from;
    }
    this.#position = end;
  }

  digest(): ImageDigest {
    const ranges = this.#ranges.map((r) => (r.fed === r.length ? r.hash.digest('hex') : ''));
    const image = this.#contiguous ? this.#image.digest('hex') : undefined;
    this.reset([]);
    return { image, ranges };
  }
}

const imageHasher = new ImageHasher();
const zeroBlock = Buffer.alloc(1024 * 1024);

async function init(request: Extract<WorkerRequest, { op: 'init' }>): Promise<void> {
  encryptionKey = Buffer.from(request.encryptionKey);
  blobIdKey = Buffer.from(request.blobIdKey);
  for (const registration of request.codecs) {
    const module = ((await import(registration.moduleUrl)) as { default: CodecModule }).default;
    // Decoders never need settings: everything a decoder needs is in the stream.
    decoders.set(registration.headerId, module.create({ type: registration.name }));
    if (registration.headerId === request.writeCodecId) writeCodec = module.create(request.writeCodec);
  }
  writeCodecId = request.writeCodecId;
  if (!writeCodec) throw new Error(`codec ${request.writeCodec.type} is not loaded`);
}

function isAllZero(bytes: Buffer): boolean {
  // Compare 1 MiB at a time against a zero block: memcmp speed, no per-byte JS loop.
  for (let at = 0; at < bytes.length; at += zeroBlock.length) {
    const part = bytes.subarray(at, Math.min(bytes.length, at + zeroBlock.length));
    if (!part.equals(zeroBlock.subarray(0, part.length))) return false;
  }
  return true;
}

/** Blob plaintext: u8 codec id ‖ payload. Falls back to `none` when compression does not help. */
function sealPlain(plain: Buffer): Buffer {
  let codecId = writeCodecId;
  let payload: Uint8Array = writeCodecId === CODEC_NONE ? plain : writeCodec.compress(plain);
  if (payload.length >= plain.length) {
    codecId = CODEC_NONE;
    payload = plain;
  }
  const framed = Buffer.allocUnsafe(1 + payload.length);
  framed[0] = codecId;
  framed.set(payload, 1);
  return seal(encryptionKey, framed);
}

class BlobDamage extends Error {}
/** The blob is intact but was written with a codec no enabled plugin provides. */
class MissingCodec extends Error {}

function openBlob(sealed: Uint8Array, rawLength: number, id: string): Uint8Array {
  let framed: Buffer;
  try {
    framed = open(encryptionKey, sealed);
  } catch (err) {
    throw new BlobDamage(`blob ${id.slice(0, 12)} fails authentication (${(err as Error).message})`);
  }
  const codec = decoders.get(framed[0]!);
  if (!codec) throw new MissingCodec(`blob ${id.slice(0, 12)} was compressed with codec id ${framed[0]}, which no enabled plugin provides; enable that codec's plugin in plugins.json`);
  let plain: Uint8Array;
  try {
    plain = codec.decompress(framed.subarray(1), rawLength);
  } catch (err) {
    throw new BlobDamage(`blob ${id.slice(0, 12)} does not decompress: ${(err as Error).message}`);
  }
  if (plain.length !== rawLength) throw new BlobDamage(`blob ${id.slice(0, 12)} has ${plain.length} bytes, expected ${rawLength}`);
  if (blobIdOf(blobIdKey, plain).toString('hex') !== id) throw new BlobDamage(`blob ${id.slice(0, 12)} does not match its id`);
  return plain;
}

async function handle(request: WorkerRequest): Promise<{ reply: WorkerReply; transfer: ArrayBuffer[] }> {
  switch (request.op) {
    case 'init':
      await init(request);
      return { reply: { ok: true }, transfer: [] };
    case 'hash': {
      const bytes = Buffer.from(request.slot, 0, request.length);
      if (isAllZero(bytes)) return { reply: { ok: true, zero: true }, transfer: [] };
      return { reply: { ok: true, zero: false, id: blobIdOf(blobIdKey, bytes) }, transfer: [] };
    }
    case 'seal': {
      const sealed = sealPlain(Buffer.from(request.slot, 0, request.length));
      return { reply: { ok: true, sealed }, transfer: [sealed.buffer as ArrayBuffer] };
    }
    case 'sealBytes': {
      const plain = Buffer.from(request.data.buffer, request.data.byteOffset, request.data.byteLength);
      const sealed = sealPlain(plain);
      return { reply: { ok: true, sealed, id: blobIdOf(blobIdKey, plain) }, transfer: [sealed.buffer as ArrayBuffer] };
    }
    case 'open': {
      const plain = openBlob(request.sealed, request.rawLength, request.id);
      if (request.into) {
        new Uint8Array(request.into).set(plain, 0);
        return { reply: { ok: true }, transfer: [] };
      }
      const copy = new Uint8Array(plain);
      return { reply: { ok: true, plain: copy }, transfer: [copy.buffer] };
    }
    case 'imageReset':
      imageHasher.reset(request.ranges);
      return { reply: { ok: true }, transfer: [] };
    case 'imageUpdate':
      imageHasher.update(new Uint8Array(request.slot, request.start, request.length), request.offset);
      return { reply: { ok: true }, transfer: [] };
    case 'imageZeros':
      for (let done = 0; done < request.length; done += zeroBlock.length) {
        imageHasher.update(zeroBlock.subarray(0, Math.min(request.length - done, zeroBlock.length)), request.offset + done);
      }
      return { reply: { ok: true }, transfer: [] };
    case 'imageDigest':
      return { reply: { ok: true, digest: imageHasher.digest() }, transfer: [] };
  }
}

parentPort!.on('message', (request: WorkerRequest) => {
  handle(request).then(
    ({ reply, transfer }) => parentPort!.postMessage(reply, transfer),
    (err: unknown) =>
      parentPort!.postMessage({
        ok: false,
        message: err instanceof Error ? err.message : String(err),
        kind: err instanceof BlobDamage ? 'damage' : err instanceof MissingCodec ? 'missing-codec' : undefined,
      }),
  );
});
