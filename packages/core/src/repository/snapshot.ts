import type { VolumeLayout } from '../source.js';
import type { ImageDigestAlgorithm } from '../crypto/crypto.js';
import { DamageError, UnsupportedFormatError } from '../errors.js';

/** A digest of a whole logical image, as hex; `b3sum` or `sha256sum` of the restored image prints the same. */
export interface ImageDigest {
  algorithm: ImageDigestAlgorithm;
  hex: string;
}

/**
 * The manifest of one backup run, stored encrypted as snapshots/<id> (docs/FORMAT.md).
 * Version 1 stores the image digest as a `sha256` field, version 2 as `imageDigest`; in
 * memory both read as `imageDigest`.
 */
export interface SnapshotManifest {
  version: 1 | 2;
  /** ISO 8601 time the backup started. */
  time: string;
  hostname: string;
  job: string;
  /** Labels given with `backup --tag`; absent when there are none (older readers ignore it). */
  tags?: string[];
  source: { type: string; path: string };
  layout: VolumeLayout;
  /** Size of the logical image in bytes. */
  size: number;
  chunkSize: number;
  chunkCount: number;
  /** Ids of the chunk-map blobs, in order; together they hold `chunkCount` records. */
  chunkMaps: string[];
  /** Digest of the whole logical image (unused chunks read as zeros). */
  imageDigest: ImageDigest;
  /** Name of the codec new blobs were written with. */
  compression: string;
  /**
   * Set by `cairn repair snapshots`: image ranges whose data was lost and is recorded as zero
   * chunks instead (sorted, merged). `imageDigest` stays the original image's, which the
   * repaired image no longer matches: a restore verifies blob by blob instead.
   */
  lost?: Array<{ offset: number; length: number }>;
  /** Set by `cairn repair snapshots`: the id of the snapshot this one replaced. */
  repairedFrom?: string;
  stats: {
    bytesRead: number;
    /** Bytes of packs and indexes this run added; the snapshot object itself comes on top. */
    bytesAdded: number;
    dataChunks: number;
    zeroChunks: number;
    unusedChunks: number;
    newChunks: number;
    durationMs: number;
  };
  /**
   * Byte ranges of the image the source could not read (`backup --rescue`), in order, merged;
   * absent when every byte was read. The image holds zeros there, and its digest covers them.
   */
  unreadable?: Array<{ offset: number; length: number }>;
}

/** The newest manifest version this cairn reads. */
export const MANIFEST_VERSION = 2;

/** The manifest version that records a digest of this algorithm: older readers know SHA-256 as version 1. */
export function manifestVersionFor(algorithm: ImageDigestAlgorithm): SnapshotManifest['version'] {
  return algorithm === 'sha256' ? 1 : 2;
}

export function encodeManifest(manifest: SnapshotManifest): Buffer {
  const { algorithm } = manifest.imageDigest;
  if (manifestVersionFor(algorithm) !== manifest.version) throw new Error(`A version ${manifest.version} manifest cannot record a ${algorithm} digest`);
  if (manifest.version === 1) {
    const { imageDigest, ...rest } = manifest;
    return Buffer.from(JSON.stringify({ ...rest, sha256: imageDigest.hex }));
  }
  return Buffer.from(JSON.stringify(manifest));
}

const HEX_DIGEST = /^[0-9a-f]{64}$/;

/** Parses a stored manifest; `id` names it in errors. */
export function decodeManifest(id: string, plain: Buffer): SnapshotManifest {
  let stored: Record<string, unknown>;
  try {
    stored = JSON.parse(plain.toString('utf8'));
  } catch (err) {
    throw new DamageError(`Snapshot ${id} is not valid JSON`, { cause: err });
  }
  if (typeof stored !== 'object' || stored === null) throw new DamageError(`Snapshot ${id} is not a manifest`);
  const { version } = stored;
  if (typeof version === 'number' && version > MANIFEST_VERSION) {
    throw new UnsupportedFormatError(`Snapshot ${id.slice(0, 12)} has manifest version ${version}; this cairn reads up to version ${MANIFEST_VERSION}. Upgrade cairn to use it.`);
  }
  if (stored.unreadable !== undefined && !isRangeList(stored.unreadable)) throw new DamageError(`Snapshot ${id} has an invalid list of unreadable ranges`);
  if (version === 1) {
    const { sha256, ...rest } = stored;
    if (typeof sha256 !== 'string' || !HEX_DIGEST.test(sha256)) throw new DamageError(`Snapshot ${id} has no valid sha256 of its image`);
    checkRepairFields(id, stored);
    return { ...rest, imageDigest: { algorithm: 'sha256', hex: sha256 } } as unknown as SnapshotManifest;
  }
  if (version === 2) {
    const digest = stored.imageDigest as Partial<ImageDigest> | undefined;
    if (digest?.algorithm !== 'blake3' || typeof digest.hex !== 'string' || !HEX_DIGEST.test(digest.hex)) {
      throw new DamageError(`Snapshot ${id} has no valid digest of its image`);
    }
    checkRepairFields(id, stored);
    return stored as unknown as SnapshotManifest;
  }
  throw new DamageError(`Snapshot ${id} has an invalid manifest version ${JSON.stringify(version)}`);
}

/** Sorted, non-overlapping ranges of whole bytes, inside the image when its size is known. */
function isRangeList(value: unknown, size?: unknown): value is Array<{ offset: number; length: number }> {
  if (!Array.isArray(value)) return false;
  let end = 0;
  for (const range of value as Array<{ offset?: unknown; length?: unknown }>) {
    const { offset, length } = range ?? {};
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || (offset as number) < end || (length as number) <= 0) return false;
    end = (offset as number) + (length as number);
  }
  return typeof size !== 'number' || end <= size;
}

/** The optional fields `repair snapshots` writes: sorted, disjoint ranges inside the image, and an id. */
function checkRepairFields(id: string, stored: Record<string, unknown>): void {
  const { lost, repairedFrom, size } = stored;
  if (repairedFrom !== undefined && (typeof repairedFrom !== 'string' || !HEX_DIGEST.test(repairedFrom))) throw new DamageError(`Snapshot ${id} has an invalid repairedFrom`);
  if (lost !== undefined && !isRangeList(lost, size)) throw new DamageError(`Snapshot ${id} has an invalid list of lost ranges`);
}
