/*
 * Binary layouts of the repository format. They are the same in every version: versions differ
 * in which hash does what (config.ts: blob ids, pack names, the image digest), version 4 adds
 * prune marks and authenticated configs, version 5 tree blobs for file snapshots.
 * docs/FORMAT.md is the prose version of this file; change both together. All integers are
 * little-endian.
 */

/** The version this cairn writes; it reads every version from 1 to this one. */
export const FORMAT_VERSION = 7;
export const ID_LENGTH = 32;

/** What a blob holds. Stored in pack headers and indexes. */
export const BlobType = {
  /** A chunk of image data. */
  chunk: 0,
  /** A chunk map: which blob holds which chunk of a snapshot's image. */
  chunkMap: 1,
  /** A folder of a file snapshot: its entries' metadata and content chunks (files/tree.ts; format version 5). */
  tree: 2,
} as const;
export type BlobType = (typeof BlobType)[keyof typeof BlobType];

/** Codec header id 0: stored as is. */
export const CODEC_NONE = 0;

export interface PackedBlob {
  type: BlobType;
  id: Buffer;
  /** Byte offset of the sealed blob inside its pack. */
  offset: number;
  /** Length of the sealed blob. */
  length: number;
  /** Length of the plaintext before compression. */
  rawLength: number;
}

// ---- Pack header ----------------------------------------------------------------
// A pack is: sealed blob 1 ‖ … ‖ sealed blob n ‖ sealed header ‖ u32 sealed header length.
// Header plaintext: "CPK1" ‖ u32 count ‖ count × (u8 type ‖ id[32] ‖ u32 length ‖ u32 rawLength).
// Blob offsets follow from the lengths: blobs are stored back to back from offset 0.

const PACK_MAGIC = Buffer.from('CPK1');
const PACK_ENTRY = 1 + ID_LENGTH + 4 + 4;

/** Length of the plaintext pack header that lists `blobCount` blobs. */
export function packHeaderLength(blobCount: number): number {
  return 8 + blobCount * PACK_ENTRY;
}

export function encodePackHeader(blobs: readonly PackedBlob[]): Buffer {
  const out = Buffer.alloc(packHeaderLength(blobs.length));
  PACK_MAGIC.copy(out, 0);
  out.writeUInt32LE(blobs.length, 4);
  let at = 8;
  for (const blob of blobs) {
    out.writeUInt8(blob.type, at);
    blob.id.copy(out, at + 1);
    out.writeUInt32LE(blob.length, at + 1 + ID_LENGTH);
    out.writeUInt32LE(blob.rawLength, at + 5 + ID_LENGTH);
    at += PACK_ENTRY;
  }
  return out;
}

export function decodePackHeader(plain: Buffer): PackedBlob[] {
  if (plain.length < 8 || !plain.subarray(0, 4).equals(PACK_MAGIC)) throw new Error('not a pack header');
  const count = plain.readUInt32LE(4);
  if (plain.length !== packHeaderLength(count)) throw new Error('pack header has the wrong length');
  const blobs: PackedBlob[] = [];
  let offset = 0;
  for (let i = 0, at = 8; i < count; i++, at += PACK_ENTRY) {
    const length = plain.readUInt32LE(at + 1 + ID_LENGTH);
    blobs.push({
      type: checkBlobType(plain.readUInt8(at)),
      id: Buffer.from(plain.subarray(at + 1, at + 1 + ID_LENGTH)),
      offset,
      length,
      rawLength: plain.readUInt32LE(at + 5 + ID_LENGTH),
    });
    offset += length;
  }
  return blobs;
}

// ---- Index ------------------------------------------------------------------------
// Plaintext: "CIX1" ‖ u32 packCount ‖ packCount × (packId[32] ‖ u32 blobCount ‖
//   blobCount × (u8 type ‖ id[32] ‖ u32 offset ‖ u32 length ‖ u32 rawLength)).

const INDEX_MAGIC = Buffer.from('CIX1');
const INDEX_ENTRY = 1 + ID_LENGTH + 12;

export interface IndexedPack {
  id: Buffer;
  blobs: PackedBlob[];
}

export function encodeIndex(packs: readonly IndexedPack[]): Buffer {
  const size = 8 + packs.reduce((n, p) => n + ID_LENGTH + 4 + p.blobs.length * INDEX_ENTRY, 0);
  const out = Buffer.alloc(size);
  INDEX_MAGIC.copy(out, 0);
  out.writeUInt32LE(packs.length, 4);
  let at = 8;
  for (const pack of packs) {
    pack.id.copy(out, at);
    out.writeUInt32LE(pack.blobs.length, at + ID_LENGTH);
    at += ID_LENGTH + 4;
    for (const blob of pack.blobs) {
      out.writeUInt8(blob.type, at);
      blob.id.copy(out, at + 1);
      out.writeUInt32LE(blob.offset, at + 1 + ID_LENGTH);
      out.writeUInt32LE(blob.length, at + 5 + ID_LENGTH);
      out.writeUInt32LE(blob.rawLength, at + 9 + ID_LENGTH);
      at += INDEX_ENTRY;
    }
  }
  return out;
}

export function decodeIndex(plain: Buffer): IndexedPack[] {
  const packs: IndexedPack[] = [];
  visitIndex(plain, {
    pack: (id) => void packs.push({ id: Buffer.from(id), blobs: [] }),
    blob: (type, bytes, idAt, offset, length, rawLength) =>
      void packs.at(-1)!.blobs.push({ type, id: Buffer.from(bytes.subarray(idAt, idAt + ID_LENGTH)), offset, length, rawLength }),
  });
  return packs;
}

/** What visitIndex hands over: each pack, then each of its blobs, its id being `bytes[idAt, idAt + ID_LENGTH)`. */
export interface IndexVisitor {
  /** Before the first pack, once the index is checked: how many blobs it lists. */
  start?(blobs: number): void;
  pack(id: Buffer): void;
  blob(type: BlobType, bytes: Buffer, idAt: number, offset: number, length: number, rawLength: number): void;
}

/**
 * Goes through an index's plaintext without an object per blob (an index of 100,000 blobs took
 * 0.2 s to decode into objects and add to a BlobIndex). The whole index is checked first, so
 * one that is malformed throws before the visitor sees anything. Returns the number of blobs.
 */
export function visitIndex(plain: Buffer, visitor: IndexVisitor): number {
  const blobs = checkIndex(plain);
  visitor.start?.(blobs);
  const packCount = plain.readUInt32LE(4);
  let at = 8;
  for (let p = 0; p < packCount; p++) {
    visitor.pack(plain.subarray(at, at + ID_LENGTH));
    const count = plain.readUInt32LE(at + ID_LENGTH);
    at += ID_LENGTH + 4;
    for (let i = 0; i < count; i++, at += INDEX_ENTRY) {
      visitor.blob(plain[at] as BlobType, plain, at + 1, plain.readUInt32LE(at + 1 + ID_LENGTH), plain.readUInt32LE(at + 5 + ID_LENGTH), plain.readUInt32LE(at + 9 + ID_LENGTH));
    }
  }
  return blobs;
}

/** The number of blobs an index lists; throws when it is not one, is cut short, has a blob of an unknown type or bytes past its end. */
function checkIndex(plain: Buffer): number {
  if (plain.length < 8 || !plain.subarray(0, 4).equals(INDEX_MAGIC)) throw new Error('not an index');
  const packCount = plain.readUInt32LE(4);
  let at = 8;
  let blobs = 0;
  for (let p = 0; p < packCount; p++) {
    if (at + ID_LENGTH + 4 > plain.length) throw new Error('index is truncated');
    const count = plain.readUInt32LE(at + ID_LENGTH);
    at += ID_LENGTH + 4;
    if (at + count * INDEX_ENTRY > plain.length) throw new Error('index is truncated');
    for (let i = 0; i < count; i++, at += INDEX_ENTRY) checkBlobType(plain[at]!);
    blobs += count;
  }
  if (at !== plain.length) throw new Error('index has trailing bytes');
  return blobs;
}

// ---- Chunk map -----------------------------------------------------------------
// The image is cut into chunks of `chunkSize` bytes (the last may be shorter). A snapshot
// stores, per chunk, one record: u8 kind, followed by the blob id[32] when kind is `data`.
// Records are split into chunk-map blobs of at most CHUNKS_PER_MAP records, in order.

export const ChunkKind = {
  /** Not in use by the filesystem: zeros in an image file, left as is on a device. */
  unused: 0,
  /** All zero bytes: restored as zeros, never stored. */
  zero: 1,
  /** Stored in the blob whose id follows. */
  data: 2,
} as const;
export type ChunkKind = (typeof ChunkKind)[keyof typeof ChunkKind];

export const CHUNKS_PER_MAP = 16384;

export interface ChunkRecord {
  kind: ChunkKind;
  id?: Buffer;
}

/**
 * The one record of every unused chunk, and of every zero chunk: shared, not one object per
 * chunk, since a large disk has hundreds of thousands of them (524,288 chunks of 4 MiB in
 * 2 TiB), each 32 bytes of heap on its own, held from the chunk maps' decoding to the end.
 */
export const UNUSED_CHUNK: ChunkRecord = Object.freeze({ kind: ChunkKind.unused });
export const ZERO_CHUNK: ChunkRecord = Object.freeze({ kind: ChunkKind.zero });

export function encodeChunkMap(records: readonly ChunkRecord[]): Buffer {
  const size = records.reduce((n, r) => n + (r.kind === ChunkKind.data ? 1 + ID_LENGTH : 1), 0);
  const out = Buffer.alloc(size);
  let at = 0;
  for (const record of records) {
    out.writeUInt8(record.kind, at++);
    if (record.kind === ChunkKind.data) {
      record.id!.copy(out, at);
      at += ID_LENGTH;
    }
  }
  return out;
}

export function decodeChunkMap(plain: Buffer): ChunkRecord[] {
  const records: ChunkRecord[] = [];
  let at = 0;
  while (at < plain.length) {
    const kind = plain.readUInt8(at++);
    if (kind === ChunkKind.data) {
      if (at + ID_LENGTH > plain.length) throw new Error('chunk map is truncated');
      records.push({ kind, id: Buffer.from(plain.subarray(at, at + ID_LENGTH)) });
      at += ID_LENGTH;
    } else if (kind === ChunkKind.zero || kind === ChunkKind.unused) {
      records.push(kind === ChunkKind.zero ? ZERO_CHUNK : UNUSED_CHUNK);
    } else {
      throw new Error(`chunk map has an unknown record kind ${kind}`);
    }
  }
  return records;
}

function checkBlobType(value: number): BlobType {
  if (value !== BlobType.chunk && value !== BlobType.chunkMap && value !== BlobType.tree) throw new Error(`unknown blob type ${value}`);
  return value;
}

/** Where objects live on the target. */
export const Keys = {
  config: 'config',
  key: (id: string) => `keys/${id}`,
  pack: (id: string) => `data/${id.slice(0, 2)}/${id}`,
  index: (id: string) => `index/${id}`,
  snapshot: (id: string) => `snapshots/${id}`,
  lock: (id: string) => `locks/${id}`,
  mark: (id: string) => `marks/${id}`,
} as const;

export function idFromKey(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1);
}

export function isObjectId(name: string): boolean {
  return /^[0-9a-f]{64}$/.test(name);
}
