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
  | { op: 'imageUpdate'; slot: SharedArrayBuffer; length: number }
  | { op: 'imageZeros'; length: number }
  | { op: 'imageDigest' }
  | { op: 'imageReset' };

export type WorkerReply =
  | { ok: true; zero?: boolean; id?: Uint8Array; sealed?: Uint8Array; plain?: Uint8Array; digest?: string }
  | { ok: false; message: string; damage?: boolean };

let encryptionKey: Buffer;
let blobIdKey: Buffer;
let writeCodec: Codec;
let writeCodecId = CODEC_NONE;
const decoders = new Map<number, Codec>();
let imageHash: Hash = createHash('sha256');
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

function openBlob(sealed: Uint8Array, rawLength: number, id: string): Uint8Array {
  let framed: Buffer;
  try {
    framed = open(encryptionKey, sealed);
  } catch (err) {
    throw new BlobDamage(`blob ${id.slice(0, 12)} fails authentication (${(err as Error).message})`);
  }
  const codec = decoders.get(framed[0]!);
  if (!codec) throw new BlobDamage(`blob ${id.slice(0, 12)} uses codec id ${framed[0]}, which no enabled plugin provides`);
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
    case 'imageUpdate':
      imageHash.update(new Uint8Array(request.slot, 0, request.length));
      return { reply: { ok: true }, transfer: [] };
    case 'imageZeros':
      for (let left = request.length; left > 0; left -= zeroBlock.length) {
        imageHash.update(zeroBlock.subarray(0, Math.min(left, zeroBlock.length)));
      }
      return { reply: { ok: true }, transfer: [] };
    case 'imageReset':
      imageHash = createHash('sha256');
      return { reply: { ok: true }, transfer: [] };
    case 'imageDigest': {
      const digest = imageHash.digest('hex');
      imageHash = createHash('sha256');
      return { reply: { ok: true, digest }, transfer: [] };
    }
  }
}

parentPort!.on('message', (request: WorkerRequest) => {
  handle(request).then(
    ({ reply, transfer }) => parentPort!.postMessage(reply, transfer),
    (err: unknown) =>
      parentPort!.postMessage({ ok: false, message: err instanceof Error ? err.message : String(err), damage: err instanceof BlobDamage }),
  );
});
