import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, scrypt as scryptCallback } from 'node:crypto';
import { Blake3Hasher, blake3 } from '@napi-rs/blake-hash';
import { loadPosix, type Posix } from '../files/posix.js';

/*
 * All cryptography of the repository format, in one place (docs/FORMAT.md, "Encryption").
 * AES-256-GCM with a random 96-bit nonce per object; blob ids are a keyed hash of the
 * plaintext under a separate key, so ids reveal nothing about content to someone without
 * the password. Nothing here is configurable on purpose: the blob id scheme follows from
 * the repository's format version.
 */

export const NONCE_LENGTH = 12;
export const TAG_LENGTH = 16;
/** Bytes that sealing adds to a plaintext. */
export const SEAL_OVERHEAD = NONCE_LENGTH + TAG_LENGTH;
export const KEY_LENGTH = 32;

/** The repository's secrets, created once at `init` and stored only wrapped (keys/<id>). */
export interface MasterKey {
  /** AES-256-GCM key for every object. */
  encryption: Buffer;
  /** Key of the keyed hash that names blobs (see BlobIdScheme). */
  blobId: Buffer;
}

export function newMasterKey(): MasterKey {
  return { encryption: randomBytes(KEY_LENGTH), blobId: randomBytes(KEY_LENGTH) };
}

const NONCE_POOL_LENGTH = NONCE_LENGTH * 341;
let noncePool = Buffer.alloc(0);
let nonceAt = 0;

/**
 * A fresh random nonce, cut from random bytes drawn 4 KiB at a time: a randomBytes call per
 * sealed blob takes 5 µs alone and more on a busy machine, for 12 bytes. Every nonce is still
 * 96 random bits no other object got; each thread has its own pool.
 */
function freshNonce(): Buffer {
  if (nonceAt + NONCE_LENGTH > noncePool.length) {
    noncePool = randomBytes(NONCE_POOL_LENGTH);
    nonceAt = 0;
  }
  nonceAt += NONCE_LENGTH;
  return noncePool.subarray(nonceAt - NONCE_LENGTH, nonceAt);
}

/** Layout: nonce (12) ‖ ciphertext ‖ GCM tag (16). The plaintext may come in parts (sealed as their concatenation). */
export function seal(key: Buffer, ...plaintext: Uint8Array[]): Buffer {
  const length = plaintext.reduce((n, part) => n + part.length, 0);
  // allocUnsafeSlow: never a slice of the shared pool, so workers can transfer its ArrayBuffer.
  const out = Buffer.allocUnsafeSlow(NONCE_LENGTH + length + TAG_LENGTH);
  sealInto(key, out, ...plaintext);
  return out;
}

/**
 * The cipher encrypts and decrypts chunks this many bytes at a time: Node's cipher returns a
 * new buffer per call, and pieces of this size are freed and reused by malloc, where
 * chunk-sized ones piled up in each worker's arena.
 */
const CIPHER_PIECE = 1024 * 1024;

/**
 * `seal` into `out`, without a buffer of the plaintext's size; the sealed length. A plaintext
 * part must not overlap `out` except exactly where its ciphertext goes (in place: the part at
 * `out[NONCE_LENGTH + bytes of the parts before it]`); each piece is encrypted before it is written.
 */
export function sealInto(key: Buffer, out: Uint8Array, ...plaintext: Uint8Array[]): number {
  const nonce = freshNonce();
  if (nativeCipher && plaintext.length <= NATIVE_MOST_PARTS) {
    out.set(nonce, 0);
    return NONCE_LENGTH + nativeCipher.aesGcmSealInto(key, nonce, plaintext, out, NONCE_LENGTH);
  }
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  out.set(nonce, 0);
  let written = NONCE_LENGTH;
  const put = (bytes: Uint8Array) => {
    out.set(bytes, written);
    written += bytes.length;
  };
  for (const part of plaintext) for (let at = 0; at < part.length; at += CIPHER_PIECE) put(cipher.update(part.subarray(at, at + CIPHER_PIECE)));
  put(cipher.final());
  put(cipher.getAuthTag());
  return written;
}

/** The native AES-256-GCM, in threads that called useNativeCipher. */
let nativeCipher: Pick<Posix, 'aesGcmSealInto' | 'aesGcmOpenInto'> | undefined;
/** The most plaintext parts the native cipher takes in one call. */
const NATIVE_MOST_PARTS = 8;

/**
 * From now on, in this thread, `seal`, `sealInto`, `open` and `openInto` encrypt and decrypt
 * with the native AES-256-GCM of @cairn/posix, straight into their output: Node's cipher
 * returns a new, zero-filled buffer for every update, which was then copied into the chunk slot. That
 * allocation, its page faults and the copy were 7-9 % of a volume backup's CPU time. The
 * bytes are the same either way. Without the addon, Node's cipher stays in use.
 */
export async function useNativeCipher(): Promise<void> {
  nativeCipher ??= await loadPosix().catch(() => undefined);
}

/** Which AES-256-GCM `seal`, `sealInto`, `open` and `openInto` use in this thread. */
export function cipherInUse(): 'native' | 'node' {
  return nativeCipher ? 'native' : 'node';
}

/** `open` into `out` (room for the plaintext, not overlapping `sealed`), in pieces; the plaintext's length. Throws AuthenticationError as `open`. */
export function openInto(key: Buffer, sealed: Uint8Array, out: Uint8Array): number {
  const length = sealed.length - SEAL_OVERHEAD;
  if (length < 0 || length > out.length) throw new AuthenticationError();
  if (nativeCipher) {
    const [nonce, ciphertext, tag] = [sealed.subarray(0, NONCE_LENGTH), sealed.subarray(NONCE_LENGTH, NONCE_LENGTH + length), sealed.subarray(NONCE_LENGTH + length)];
    if (!nativeCipher.aesGcmOpenInto(key, nonce, ciphertext, tag, out)) throw new AuthenticationError();
    return length;
  }
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, NONCE_LENGTH));
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_LENGTH));
  const ciphertext = sealed.subarray(NONCE_LENGTH, NONCE_LENGTH + length);
  let written = 0;
  try {
    for (let at = 0; at < length; at += CIPHER_PIECE) {
      const piece = decipher.update(ciphertext.subarray(at, at + CIPHER_PIECE));
      out.set(piece, written);
      written += piece.length;
    }
    out.set(decipher.final(), written);
  } catch {
    throw new AuthenticationError();
  }
  return length;
}

export class AuthenticationError extends Error {
  constructor() {
    super('authentication failed: the data was modified or the key is wrong');
  }
}

/** Inverse of `seal`; throws AuthenticationError when a single bit differs. */
export function open(key: Buffer, sealed: Uint8Array): Buffer {
  if (sealed.length < SEAL_OVERHEAD) throw new AuthenticationError();
  const out = Buffer.allocUnsafeSlow(sealed.length - SEAL_OVERHEAD);
  openInto(key, sealed, out);
  return out;
}

/**
 * How blob ids are computed. Format version 1 used HMAC-SHA256; versions 2 to 6 use BLAKE3
 * in its keyed mode, a PRF like HMAC but about 3.3 times as fast here (5.5 against 1.66 GB/s
 * on one core): every byte of every backup is hashed for its id, so this is one of the
 * largest costs of an incremental backup. Version 7 keys the hash of the plaintext's plain
 * BLAKE3 (`blake3-keyed-digest`): a volume backup needs that plain BLAKE3 of every chunk for
 * the image digest anyway, so each chunk is hashed once instead of twice.
 */
export type BlobIdScheme = 'hmac-sha256' | 'blake3-keyed' | 'blake3-keyed-digest';

export function blobIdOf(scheme: BlobIdScheme, key: Buffer, plaintext: Uint8Array): Buffer {
  return blobIdAndDigest(scheme, key, plaintext, false).id;
}

/**
 * A blob's id and, when `withDigest`, the plain BLAKE3 of its plaintext (a chunk's line of the
 * image digest), each byte hashed once where the scheme allows.
 */
export function blobIdAndDigest(scheme: BlobIdScheme, key: Buffer, plaintext: Uint8Array, withDigest: boolean): { id: Buffer; digest?: Buffer } {
  if (scheme === 'blake3-keyed-digest') {
    const digest = blake3(plaintext);
    return { id: keyedBlake3(key, digest), ...(withDigest && { digest }) };
  }
  const id = scheme === 'blake3-keyed' ? keyedBlake3(key, plaintext) : createHmac('sha256', key).update(plaintext).digest();
  return { id, ...(withDigest && { digest: blake3(plaintext) }) };
}

/**
 * A keyed hasher per key, reset for each hash: making one per blob cost 10 µs (the native
 * object), reusing it 2 µs, and every blob id of a `blake3-keyed-digest` repository is a keyed
 * hash of 32 bytes.
 */
const keyedHashers = new WeakMap<Buffer, Blake3Hasher>();

function keyedBlake3(key: Buffer, data: Uint8Array): Buffer {
  let hasher = keyedHashers.get(key);
  if (hasher) hasher.reset(); // back to its initial state, the key kept
  else keyedHashers.set(key, (hasher = Blake3Hasher.newKeyed(key)));
  hasher.update(data);
  return hasher.digestBuffer();
}

/**
 * How packs are named: by the SHA-256 of their bytes in format version 1, by their BLAKE3
 * hash (256 bits) from version 2 on. Packs are nearly all the bytes a backup writes, and
 * hashing them on the main thread cost half a second of CPU for a 4 GiB volume with SHA-256.
 */
export type PackIdScheme = 'sha256' | 'blake3';

export function packIdOf(scheme: PackIdScheme, bytes: Uint8Array): Buffer {
  return scheme === 'blake3' ? blake3(bytes) : sha256(bytes);
}

/** A pack's id computed as its bytes are written, piece by piece: the same as packIdOf of them all. */
export interface PackIdHash {
  update(bytes: Uint8Array): void;
  digest(): Buffer;
}

export function createPackIdHash(scheme: PackIdScheme): PackIdHash {
  if (scheme === 'blake3') {
    const hasher = new Blake3Hasher();
    return { update: (bytes) => void hasher.update(bytes), digest: () => hasher.digestBuffer() };
  }
  const hash = createHash('sha256');
  return { update: (bytes) => void hash.update(bytes), digest: () => hash.digest() };
}

/**
 * The digest of the whole logical image that every snapshot records and every full restore
 * checks. SHA-256 in format versions 1 and 2, BLAKE3 (256 bits, unkeyed: what `b3sum`
 * prints) in versions 3 to 5: one serial chain through every byte of the image, unused space
 * included, so its speed bounds every backup and restore and grows with the disk, not its data.
 * From version 6 on, `blake3-chunks`: BLAKE3 over one line per chunk, the chunk's own BLAKE3
 * in hex and a newline (see ChunkDigests): chunks are hashed in parallel where they are
 * processed anyway, and a zero or unused chunk costs one precomputed line.
 */
export type ImageDigestAlgorithm = 'sha256' | 'blake3' | 'blake3-chunks';

export interface StreamingHash {
  update(bytes: Uint8Array): void;
  digestHex(): string;
}

/** The image digests computed as one stream through the image (format versions up to 5). */
export type StreamedDigestAlgorithm = Exclude<ImageDigestAlgorithm, 'blake3-chunks'>;

export function createImageHash(algorithm: StreamedDigestAlgorithm): StreamingHash {
  if (algorithm === 'blake3') {
    const hasher = new Blake3Hasher();
    return { update: (bytes) => void hasher.update(bytes), digestHex: () => hasher.digest('hex') };
  }
  const hash = createHash('sha256');
  return { update: (bytes) => void hash.update(bytes), digestHex: () => hash.digest('hex') };
}

/** Plain (unkeyed) BLAKE3-256, what `b3sum` prints. */
export function blake3Digest(data: Uint8Array): Buffer {
  return blake3(data);
}

const ZERO_BLOCK = new Uint8Array(64 * 1024);

/**
 * BLAKE3 of `length` zero bytes, fed from one small block: a zero-filled buffer of a chunk's
 * size took 14 ms to allocate and hash (its fresh pages fault in as they are read), this 1 ms.
 */
export function blake3OfZeros(length: number): Buffer {
  const hasher = new Blake3Hasher();
  for (let at = 0; at < length; at += ZERO_BLOCK.length) hasher.update(ZERO_BLOCK.subarray(0, Math.min(ZERO_BLOCK.length, length - at)));
  return hasher.digestBuffer();
}

export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

/** ~100 ms and 32 MiB on a current machine: slow enough to hurt guessing, fast enough for every command. */
export const DEFAULT_SCRYPT: ScryptParams = { N: 2 ** 15, r: 8, p: 1 };

/**
 * The key a password and salt give. With @cairn/posix, scrypt runs there (the same bytes):
 * Node's scrypt takes its 32 MiB in fresh 4 KiB pages, and their page faults were half of the
 * 150-190 ms every command that opens a repository spent on it, on the virtual machines
 * measured; the addon's takes them in huge pages (60-70 ms). Parameters it does not take, or
 * no addon, leave it to Node's.
 */
export async function deriveKey(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  const normalized = password.normalize('NFC');
  const posix = await loadPosix().catch(() => undefined);
  if (posix?.scryptSupported(params.N, params.r, params.p)) return posix.scrypt(Buffer.from(normalized, 'utf8'), salt, params.N, params.r, params.p, KEY_LENGTH);
  return nodeScrypt(normalized, salt, params);
}

/** Node's scrypt (OpenSSL's), with the memory the parameters need allowed. */
export function nodeScrypt(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCallback(
      password,
      salt,
      KEY_LENGTH,
      { N: params.N, r: params.r, p: params.p, maxmem: 256 * params.N * params.r + 1024 * 1024 },
      (err, key) => (err ? reject(err) : resolve(key)),
    );
  });
}
