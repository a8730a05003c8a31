import { parentPort } from 'node:worker_threads';
import { getPriority, setPriority } from 'node:os';
import type { Codec, CodecModule } from '../codec.js';
import { NONCE_LENGTH, SEAL_OVERHEAD, blake3Digest, blobIdAndDigest, createImageHash, open, openInto, seal, sealInto, useNativeCipher, type BlobIdScheme, type StreamedDigestAlgorithm, type StreamingHash } from '../crypto/crypto.js';
import { MAX_CHUNK_SIZE } from '../repository/config.js';
import { CODEC_NONE } from '../repository/format.js';
import type { ImageHashResult, SealedSmallChunk, SharedBlob, WorkerFailure, WorkerReply, WorkerRequest } from './worker-protocol.js';
import { YoungGarbage } from './young-garbage.js';

/*
 * The CPU-heavy per-chunk work, off the main thread: zero detection, keyed hashing,
 * compression, encryption, and the reverse. Chunks arrive in SharedArrayBuffer slots (no
 * copy); a chunk's blob is written back into its slot, other output is transferred back.
 * Also keeps one ordered digest of a whole image (SHA-256 or BLAKE3).
 */

let encryptionKey: Buffer;
let blobIdKey: Buffer;
let blobIdScheme: BlobIdScheme;
const blobId = (plaintext: Uint8Array) => blobIdAndDigest(blobIdScheme, blobIdKey, plaintext, false).id;
const blobIdWithDigest = (plaintext: Uint8Array, withDigest: boolean) => blobIdAndDigest(blobIdScheme, blobIdKey, plaintext, withDigest);
let writeCodec: Codec;
let writeCodecId = CODEC_NONE;
const decoders = new Map<number, Codec>();

/** The ordered digest of an image, fed in image order; void if a piece is skipped. */
class ImageHasher {
  #algorithm: StreamedDigestAlgorithm = 'sha256';
  #hash: StreamingHash = createImageHash(this.#algorithm);
  #contiguous = true;
  #position = 0;

  reset(algorithm = this.#algorithm): void {
    this.#algorithm = algorithm;
    this.#hash = createImageHash(algorithm);
    this.#contiguous = true;
    this.#position = 0;
  }

  update(bytes: Uint8Array, offset: number): void {
    if (offset !== this.#position) this.#contiguous = false;
    if (this.#contiguous) this.#hash.update(bytes);
    this.#position = offset + bytes.length;
  }

  digest(): ImageHashResult {
    const image = this.#contiguous ? this.#hash.digestHex() : undefined;
    this.reset();
    return { image };
  }
}

const imageHasher = new ImageHasher();
/** How much less CPU share pool threads take than the image hasher and the main thread under contention (nice 5: about a third). */
const POOL_NICENESS = 5;
const zeroBlock = Buffer.alloc(1024 * 1024);
/** Sealing and opening leave a chunk-sized buffer or two behind each time. */
const garbage = new YoungGarbage();

async function init(request: Extract<WorkerRequest, { op: 'init' }>): Promise<void> {
  encryptionKey = Buffer.from(request.encryptionKey);
  blobIdKey = Buffer.from(request.blobIdKey);
  blobIdScheme = request.blobIdScheme;
  for (const registration of request.codecs) {
    const module = ((await import(registration.moduleUrl)) as { default: CodecModule }).default;
    // Decoders never need settings: everything a decoder needs is in the stream.
    decoders.set(registration.headerId, module.create({ type: registration.name }));
    if (registration.headerId === request.writeCodecId) writeCodec = module.create(request.writeCodec);
  }
  writeCodecId = request.writeCodecId;
  if (!writeCodec) throw new Error(`codec ${request.writeCodec.type} is not loaded`);
  await useNativeCipher();
  if (request.role === 'pool') lowerThreadPriority();
}

/**
 * The image hash is one serial chain through every byte of the image: whatever slows the
 * image hasher's thread lengthens the run, while work on pool threads can wait a little.
 * On a busy machine the scheduler would share the cores evenly between them, so pool threads
 * yield: on Linux, nice is per thread and `setPriority(0)` changes only the calling one.
 * Only lowering is attempted (raising needs privileges), and failure changes nothing else.
 */
function lowerThreadPriority(): void {
  try {
    setPriority(0, Math.min(19, getPriority(0) + POOL_NICENESS));
  } catch {
    // Not permitted here (e.g. a seccomp profile); the pool only runs as fast as before.
  }
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
function framedPlain(plain: Buffer): [codecId: Uint8Array, payload: Uint8Array] {
  const payload = writeCodecId === CODEC_NONE ? plain : writeCodec.compress(plain);
  return payload.length >= plain.length ? [Uint8Array.of(CODEC_NONE), plain] : [Uint8Array.of(writeCodecId), payload];
}

function sealPlain(plain: Buffer): Buffer {
  return seal(encryptionKey, ...framedPlain(plain));
}

/** A buffer kept for the plaintext of a chunk decoded only to be verified. */
let spareBuffer = Buffer.alloc(0);

function spare(length: number): Buffer {
  if (spareBuffer.length < length) spareBuffer = Buffer.allocUnsafeSlow(length);
  return spareBuffer.subarray(0, length);
}

/** Seals the chunk in the first `length` bytes of its slot into the slot; the sealed length. */
function sealInSlot(slot: SharedArrayBuffer, length: number): number {
  const plain = Buffer.from(slot, 0, length);
  const [codecId, payload] = framedPlain(plain);
  if (payload === plain) return sealUncompressedInSlot(new Uint8Array(slot), length);
  return sealInto(encryptionKey, new Uint8Array(slot), codecId, payload);
}

/**
 * Seals a chunk that compression did not shrink where it lies: moved up past the nonce, after
 * its codec byte, and encrypted in place (the seal is the nonce, then the framed plaintext
 * encrypted, then the tag). A copy elsewhere cost each worker a buffer as large as the largest
 * such chunk, up to 8 MiB resident for the rest of a file backup.
 */
function sealUncompressedInSlot(slot: Uint8Array, length: number): number {
  slot.copyWithin(NONCE_LENGTH + 1, 0, length);
  slot[NONCE_LENGTH] = CODEC_NONE;
  return sealInto(encryptionKey, slot, slot.subarray(NONCE_LENGTH, NONCE_LENGTH + 1 + length));
}

/** Where blobs up to a large chunk's size are decrypted, used again for every blob. */
let framedScratch = Buffer.alloc(0);
const LARGEST_SCRATCH = MAX_CHUNK_SIZE + 1; // a codec byte and the largest chunk

/** A blob's plaintext; a view of `framedScratch`, valid until the next blob, unless the blob is larger than any chunk. */
function decrypted(sealed: Uint8Array): Buffer {
  const length = sealed.length - SEAL_OVERHEAD;
  if (length > LARGEST_SCRATCH) return open(encryptionKey, sealed);
  if (framedScratch.length < length) framedScratch = Buffer.allocUnsafeSlow(Math.max(length, 1));
  return framedScratch.subarray(0, openInto(encryptionKey, sealed, framedScratch));
}

class BlobDamage extends Error {}
/** The blob is intact but was written with a codec no enabled plugin provides. */
class MissingCodec extends Error {}

/**
 * Decrypts (GCM authenticates every byte) and decompresses a blob. `verifyId` also checks
 * the plaintext's keyed hash against the id the blob is known by: needed where nothing else
 * checks the result (check, partial restores), redundant where the image digest does.
 * `withDigest` also gives the plaintext's plain BLAKE3 (its line of a `blake3-chunks` digest).
 */
function openBlob(sealed: Uint8Array, rawLength: number, id: string, verifyId: boolean, into?: Uint8Array, withDigest = false): { plain: Uint8Array; digest?: Buffer } {
  let framed: Buffer;
  try {
    framed = decrypted(sealed);
  } catch (err) {
    throw new BlobDamage(`blob ${id.slice(0, 12)} fails authentication (${(err as Error).message})`);
  }
  const codec = decoders.get(framed[0]!);
  if (!codec) throw new MissingCodec(`blob ${id.slice(0, 12)} was compressed with codec id ${framed[0]}, which no enabled plugin provides; enable that codec's plugin in plugins.json`);
  const payload = framed.subarray(1);
  let plain: Uint8Array;
  try {
    if (into && codec.decompressInto) {
      codec.decompressInto(payload, into);
      plain = into;
    } else {
      plain = codec.decompress(payload, rawLength);
      if (into && plain.length === rawLength) into.set(plain);
    }
  } catch (err) {
    throw new BlobDamage(`blob ${id.slice(0, 12)} does not decompress: ${(err as Error).message}`);
  }
  if (plain.length !== rawLength) throw new BlobDamage(`blob ${id.slice(0, 12)} has ${plain.length} bytes, expected ${rawLength}`);
  return { plain, digest: verifiedDigest(plain, id, verifyId, withDigest) };
}

function verifiedDigest(plain: Uint8Array, id: string, verifyId: boolean, withDigest: boolean): Buffer | undefined {
  if (!verifyId) return withDigest ? blake3Digest(plain) : undefined;
  const { id: actual, digest } = blobIdWithDigest(plain, withDigest);
  if (actual.toString('hex') !== id) throw new BlobDamage(`blob ${id.slice(0, 12)} does not match its id`);
  return digest;
}

/** A small chunk's id, and the chunk sealed in its slot (which then holds the blob). */
function hashAndSeal(slot: SharedArrayBuffer, length: number): SealedSmallChunk {
  const bytes = Buffer.from(slot, 0, length);
  if (isAllZero(bytes)) return { zero: true };
  const id = blobId(bytes);
  const sealedLength = sealInSlot(slot, length);
  garbage.dropped(sealedLength);
  return { zero: false, id, sealedLength };
}

/** Opens a blob in shared memory into its plaintext's place (views of shared memory both); undefined, or why it failed. */
function openShared({ sealed, into, id }: SharedBlob): WorkerFailure | undefined {
  try {
    openBlob(sealed, into.length, id, true, into);
    garbage.dropped(sealed.length); // the cipher's output, a piece at a time
    return undefined;
  } catch (err) {
    return failureOf(err);
  }
}

/** Answers one request; what a reply carries is transferred, except chunk bytes, which stay in their slot. */
async function handle(request: WorkerRequest): Promise<{ reply: WorkerReply; transfer: ArrayBuffer[] }> {
  const done = (reply: WorkerReply, transfer: ArrayBuffer[] = []) => ({ reply, transfer });
  switch (request.op) {
    case 'init':
      await init(request);
      return done({ ok: true, op: 'init' });
    case 'hash': {
      const bytes = Buffer.from(request.slot, 0, request.length);
      if (isAllZero(bytes)) return done({ ok: true, op: 'hash', zero: true });
      const { id, digest } = blobIdWithDigest(bytes, request.chunkDigest === true);
      return done({ ok: true, op: 'hash', zero: false, id, ...(digest && { chunkDigest: digest }) });
    }
    case 'sealInSlot': {
      // The blob replaces the chunk in its slot, which has room for the seal's overhead:
      // nothing is transferred, so the main thread gets no new memory to collect per chunk.
      const sealedLength = sealInSlot(request.slot, request.length);
      garbage.dropped(sealedLength); // the cipher's output, a piece at a time
      return done({ ok: true, op: 'sealInSlot', sealedLength });
    }
    case 'hashAndSeal':
      return done({ ok: true, op: 'hashAndSeal', sealed: request.chunks.map(({ slot, length }) => hashAndSeal(slot, length)) });
    case 'sealBytes': {
      const plain = Buffer.from(request.data.buffer, request.data.byteOffset, request.data.byteLength);
      const sealed = sealPlain(plain);
      return done({ ok: true, op: 'sealBytes', sealed, id: blobId(plain) }, [sealed.buffer as ArrayBuffer]);
    }
    case 'openInto': {
      const into = new Uint8Array(request.into, 0, request.rawLength);
      const { digest } = openBlob(request.sealed, request.rawLength, request.id, request.verifyId, into, request.chunkDigest === true);
      garbage.dropped(2 * request.sealed.length); // the blob as received and decrypted; its plaintext is in the slot
      return done({ ok: true, op: 'openInto', ...(digest && { chunkDigest: digest }) });
    }
    case 'openInSlot': {
      // The blob is decrypted out of the slot into the scratch before its plaintext is written over it.
      const sealed = new Uint8Array(request.slot, 0, request.sealedLength);
      const into = new Uint8Array(request.slot, 0, request.rawLength);
      const { digest } = openBlob(sealed, request.rawLength, request.id, request.verifyId, into, request.chunkDigest === true);
      garbage.dropped(request.sealedLength); // the cipher's output, a piece at a time
      return done({ ok: true, op: 'openInSlot', ...(digest && { chunkDigest: digest }) });
    }
    case 'openShared':
      return done({ ok: true, op: 'openShared', failures: request.blobs.map(openShared) });
    case 'verify': {
      // A tree can be larger than any chunk: that one gets a buffer of its own, not a larger spare.
      openBlob(request.sealed, request.rawLength, request.id, true, request.rawLength <= MAX_CHUNK_SIZE ? spare(request.rawLength) : undefined);
      garbage.dropped(2 * request.sealed.length);
      return done({ ok: true, op: 'verify' });
    }
    case 'open': {
      const plain = new Uint8Array(openBlob(request.sealed, request.rawLength, request.id, request.verifyId).plain);
      garbage.dropped(2 * request.sealed.length);
      return done({ ok: true, op: 'open', plain }, [plain.buffer]);
    }
    default:
      return done(handleImage(request));
  }
}

/** The image hasher's requests. */
function handleImage(request: Extract<WorkerRequest, { op: 'imageReset' | 'imageUpdate' | 'imageZeros' | 'imageDigest' }>): WorkerReply {
  switch (request.op) {
    case 'imageReset':
      imageHasher.reset(request.algorithm);
      return { ok: true, op: 'imageReset' };
    case 'imageUpdate':
      imageHasher.update(new Uint8Array(request.slot, 0, request.length), request.offset);
      return { ok: true, op: 'imageUpdate' };
    case 'imageZeros':
      for (let done = 0; done < request.length; done += zeroBlock.length) {
        imageHasher.update(zeroBlock.subarray(0, Math.min(request.length - done, zeroBlock.length)), request.offset + done);
      }
      return { ok: true, op: 'imageZeros' };
    case 'imageDigest':
      return { ok: true, op: 'imageDigest', digest: imageHasher.digest() };
  }
}

function failureOf(err: unknown): WorkerFailure {
  const kind = err instanceof BlobDamage ? 'damage' : err instanceof MissingCodec ? 'missing-codec' : 'error';
  return { ok: false, kind, message: err instanceof Error ? err.message : String(err) };
}

parentPort!.on('message', (request: WorkerRequest) => {
  handle(request).then(
    ({ reply, transfer }) => parentPort!.postMessage(reply, transfer),
    (err: unknown) => parentPort!.postMessage(failureOf(err)),
  );
});
