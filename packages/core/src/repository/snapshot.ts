import type { VolumeLayout } from '../source.js';
import type { ImageDigestAlgorithm } from '../crypto/crypto.js';
import { DamageError, UnsupportedFormatError, UsageError } from '../errors.js';

/**
 * A digest of a whole logical image, as hex: for `sha256` and `blake3`, what `sha256sum` or
 * `b3sum` of the restored image prints; for `blake3-chunks`, what `split -b CHUNK_SIZE
 * --filter='b3sum --no-names' IMAGE | b3sum --no-names` prints (see ChunkDigests).
 */
export interface ImageDigest {
  algorithm: ImageDigestAlgorithm;
  hex: string;
}

/**
 * The manifest of one backup run, stored encrypted as snapshots/<id> (docs/FORMAT.md).
 * Version 1 stores the image digest as a `sha256` field, version 2 as `imageDigest` (blake3),
 * version 4 as `imageDigest` (blake3-chunks); in memory all read as `imageDigest`.
 * (Version 3 is a file snapshot's manifest.)
 */
export interface SnapshotManifest {
  version: 1 | 2 | 4;
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

/** The chunker a file snapshot's content was cut with (the repository config's `cdc`, recorded per snapshot). */
export interface ChunkerParameters {
  algorithm: 'fastcdc';
  min: number;
  avg: number;
  max: number;
}

/** A file that could not be backed up (or only partly), as the snapshot lists it. */
export interface SkippedPath {
  path: string;
  reason: string;
}

/**
 * The manifest of a file backup (manifest version 3, format version 5): the metadata of
 * every backed-up path is in trees, one blob per folder, from `tree` down; the root tree
 * holds the paths' top folders (`/home/u/docs` is stored as home → u → docs).
 */
export interface FileSnapshotManifest {
  version: 3;
  kind: 'files';
  time: string;
  hostname: string;
  job: string;
  tags?: string[];
  source: { type: string; path: string };
  /** The absolute paths backed up, as the job resolved them. */
  paths: string[];
  /** The root tree's blob id, hex. */
  tree: string;
  /** The snapshot this one compared files against (unchanged files were not read again). */
  parent?: string;
  chunker: ChunkerParameters;
  compression: string;
  stats: {
    files: number;
    dirs: number;
    /** Symlinks, device nodes and FIFOs. */
    others: number;
    /** Sum of the sizes of the files backed up. */
    totalBytes: number;
    bytesRead: number;
    bytesAdded: number;
    /** Files the parent snapshot already held unchanged (not read). */
    unchangedFiles: number;
    dataChunks: number;
    newChunks: number;
    treeBlobs: number;
    /** Files that changed while they were read. */
    changedWhileRead: number;
    durationMs: number;
  };
  /** What could not be read (at most 1000, see `skippedCount`); absent when everything was read. The snapshot is then incomplete (exit 3). */
  skipped?: SkippedPath[];
  /** How many paths could not be read, when more than `skipped` lists. */
  skippedCount?: number;
  /**
   * Set by `cairn repair snapshots`: paths whose data was lost (at most 1000, see
   * `lostPathCount`): files whose lost content chunks were taken out of `content` (they read
   * as zeros), and folders, written with a trailing `/`, whose listing was lost. The entries
   * themselves say so in their `error` ("lost in repair: …"). Names that are not valid UTF-8
   * show U+FFFD here (this list is for people; the trees hold the exact bytes).
   */
  lostPaths?: string[];
  /** How many paths repairs lost in all, when more than `lostPaths` lists. */
  lostPathCount?: number;
  /** Set by `cairn repair snapshots`: the id of the snapshot this one replaced. */
  repairedFrom?: string;
}

/** Any snapshot's manifest: a volume image's (no `kind`) or a file backup's (`kind: 'files'`). */
export type AnySnapshotManifest = SnapshotManifest | FileSnapshotManifest;

export function isFileManifest(manifest: AnySnapshotManifest): manifest is FileSnapshotManifest {
  return (manifest as FileSnapshotManifest).kind === 'files';
}

/** The snapshot lacks something of its source: unreadable ranges of a volume, or paths a file backup could not read (exit 3). */
export function isIncompleteSnapshot(manifest: AnySnapshotManifest): boolean {
  return isFileManifest(manifest) ? manifest.skipped !== undefined : manifest.unreadable !== undefined;
}

/** The newest manifest version this cairn reads. */
export const MANIFEST_VERSION = 4;

/** The manifest version that records a digest of this algorithm: older readers know SHA-256 as version 1. */
export function manifestVersionFor(algorithm: ImageDigestAlgorithm): SnapshotManifest['version'] {
  if (algorithm === 'blake3-chunks') return 4;
  return algorithm === 'sha256' ? 1 : 2;
}

/** The image digest a volume manifest of version 2 or 4 records. */
const DIGEST_OF_MANIFEST: Record<number, ImageDigestAlgorithm> = { 2: 'blake3', 4: 'blake3-chunks' };

export function encodeManifest(manifest: AnySnapshotManifest): Buffer {
  if (isFileManifest(manifest)) return Buffer.from(JSON.stringify(manifest));
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
export function decodeManifest(id: string, plain: Buffer): AnySnapshotManifest {
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
  if (version === 2 || version === 4) {
    const digest = stored.imageDigest as Partial<ImageDigest> | undefined;
    if (digest?.algorithm !== DIGEST_OF_MANIFEST[version] || typeof digest.hex !== 'string' || !HEX_DIGEST.test(digest.hex)) {
      throw new DamageError(`Snapshot ${id} has no valid digest of its image`);
    }
    checkRepairFields(id, stored);
    return stored as unknown as SnapshotManifest;
  }
  if (version === 3) return decodeFileManifest(id, stored);
  throw new DamageError(`Snapshot ${id} has an invalid manifest version ${JSON.stringify(version)}`);
}

function decodeFileManifest(id: string, stored: Record<string, unknown>): FileSnapshotManifest {
  const { kind, tree, paths, parent, chunker } = stored;
  if (kind !== 'files') throw new DamageError(`Snapshot ${id} has manifest version 3 but is not a file snapshot`);
  if (typeof tree !== 'string' || !HEX_DIGEST.test(tree)) throw new DamageError(`Snapshot ${id} has no valid root tree id`);
  if (!Array.isArray(paths) || !paths.every((p) => typeof p === 'string')) throw new DamageError(`Snapshot ${id} has an invalid list of paths`);
  if (parent !== undefined && (typeof parent !== 'string' || !HEX_DIGEST.test(parent))) throw new DamageError(`Snapshot ${id} has an invalid parent`);
  const c = chunker as Partial<ChunkerParameters> | undefined;
  if (c?.algorithm !== 'fastcdc' || ![c.min, c.avg, c.max].every((n) => Number.isSafeInteger(n) && (n as number) > 0)) throw new DamageError(`Snapshot ${id} names no valid chunker`);
  const { lostPaths, lostPathCount, repairedFrom } = stored;
  if (lostPaths !== undefined && (!Array.isArray(lostPaths) || !lostPaths.every((p) => typeof p === 'string'))) throw new DamageError(`Snapshot ${id} has an invalid list of lost paths`);
  if (lostPathCount !== undefined && !(Number.isSafeInteger(lostPathCount) && (lostPathCount as number) >= 0)) throw new DamageError(`Snapshot ${id} has an invalid count of lost paths`);
  if (repairedFrom !== undefined && (typeof repairedFrom !== 'string' || !HEX_DIGEST.test(repairedFrom))) throw new DamageError(`Snapshot ${id} has an invalid repairedFrom`);
  return stored as unknown as FileSnapshotManifest;
}

/** The manifest as a volume image's, or a clear error naming what the command needs (`what`: "restore to a device"). */
export function requireVolumeManifest(id: string, manifest: AnySnapshotManifest, what: string): SnapshotManifest {
  if (isFileManifest(manifest)) throw new UsageError(`Snapshot ${id.slice(0, 8)} is a file snapshot (${manifest.paths.join(', ')}); ${what} needs a volume image snapshot`);
  return manifest;
}

/** The manifest as a file snapshot's, or a clear error naming what the command needs (`what`: "cairn ls"). */
export function requireFileManifest(id: string, manifest: AnySnapshotManifest, what: string): FileSnapshotManifest {
  if (!isFileManifest(manifest)) throw new UsageError(`Snapshot ${id.slice(0, 8)} is a volume image snapshot (${manifest.source.path}); ${what} needs a file snapshot`);
  return manifest;
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
