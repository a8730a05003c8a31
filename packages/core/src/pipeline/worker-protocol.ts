import type { CodecRegistration, CodecSettings } from '../codec.js';
import type { BlobIdScheme, StreamedDigestAlgorithm } from '../crypto/crypto.js';

/*
 * The messages between the main thread and the worker threads (worker.ts). Chunks travel in
 * SharedArrayBuffer slots (no copy); every request gets exactly one reply, in order.
 */

export type WorkerRequest =
  | { op: 'init'; role: 'pool' | 'image-hasher'; encryptionKey: Uint8Array; blobIdKey: Uint8Array; blobIdScheme: BlobIdScheme; codecs: CodecRegistration[]; writeCodec: CodecSettings; writeCodecId: number }
  /** `chunkDigest`: also the chunk's plain BLAKE3, for a `blake3-chunks` image digest. */
  | { op: 'hash'; slot: SharedArrayBuffer; length: number; chunkDigest?: boolean }
  | { op: 'sealInSlot'; slot: SharedArrayBuffer; length: number }
  | { op: 'hashAndSeal'; chunks: Array<{ slot: SharedArrayBuffer; length: number }> }
  | { op: 'sealBytes'; data: Uint8Array }
  | { op: 'open'; sealed: Uint8Array; rawLength: number; id: string; verifyId: boolean }
  | { op: 'verify'; sealed: Uint8Array; rawLength: number; id: string }
  | { op: 'openInto'; sealed: Uint8Array; rawLength: number; id: string; verifyId: boolean; into: SharedArrayBuffer; chunkDigest?: boolean }
  | { op: 'openInSlot'; slot: SharedArrayBuffer; sealedLength: number; rawLength: number; id: string; verifyId: boolean; chunkDigest?: boolean }
  | { op: 'openShared'; blobs: SharedBlob[] }
  | { op: 'imageReset'; algorithm: StreamedDigestAlgorithm }
  | { op: 'imageUpdate'; slot: SharedArrayBuffer; length: number; offset: number }
  | { op: 'imageZeros'; length: number; offset: number }
  | { op: 'imageDigest' };

/** A small chunk hashed and sealed in its slot, or found all zeros. */
export type SealedSmallChunk = { zero: true } | { zero: false; id: Uint8Array; sealedLength: number };

/** A sealed blob and where its plaintext goes, both views of shared memory, and the id it is checked against. */
export interface SharedBlob {
  sealed: Uint8Array;
  into: Uint8Array;
  id: string;
}

export type WorkerOp = WorkerRequest['op'];

export interface ImageHashResult {
  /** Hex digest of the whole image; undefined when not every byte from 0 on was fed in order. */
  image?: string;
}

/** One reply per operation; `ok: false` for any operation that failed. */
export type WorkerReply =
  | { ok: true; op: 'init' | 'imageReset' | 'imageUpdate' | 'imageZeros' }
  | { ok: true; op: 'openInto'; chunkDigest?: Uint8Array }
  | { ok: true; op: 'openInSlot'; chunkDigest?: Uint8Array }
  | { ok: true; op: 'openShared'; failures: Array<WorkerFailure | undefined> }
  | { ok: true; op: 'hash'; zero: true }
  | { ok: true; op: 'hash'; zero: false; id: Uint8Array; chunkDigest?: Uint8Array }
  | { ok: true; op: 'sealInSlot'; sealedLength: number }
  | { ok: true; op: 'hashAndSeal'; sealed: SealedSmallChunk[] }
  | { ok: true; op: 'sealBytes'; id: Uint8Array; sealed: Uint8Array }
  | { ok: true; op: 'open'; plain: Uint8Array }
  | { ok: true; op: 'verify' }
  | { ok: true; op: 'imageDigest'; digest: ImageHashResult }
  | WorkerFailure;

/** `damage`: the blob fails authentication or its id; `missing-codec`: no enabled plugin decodes it. */
export interface WorkerFailure {
  ok: false;
  kind: 'damage' | 'missing-codec' | 'error';
  message: string;
}

/** The successful reply to a request of operation `Op`. */
export type ReplyFor<Op extends WorkerOp> = Extract<WorkerReply, { ok: true; op: Op }>;
