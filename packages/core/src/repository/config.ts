import type { BlobIdScheme, ImageDigestAlgorithm, PackIdScheme } from '../crypto/crypto.js';
import { DamageError, UnsupportedFormatError, UsageError } from '../errors.js';
import type { ChunkerParameters } from './snapshot.js';
import { FORMAT_VERSION } from './format.js';

export interface RepositoryConfig {
  format: 'cairn';
  version: number;
  id: string;
  created: string;
  /** Default chunk size for volume images (a job may choose another). */
  chunkSize: number;
  /** Packs are closed once they reach this many bytes. */
  packSize: number;
  /** How blob ids are computed: "blake3-keyed" in versions 2 to 6, "blake3-keyed-digest" from 7 on; version 1 configs have no such field and use HMAC-SHA256. */
  blobId?: BlobIdScheme;
  /** How packs are named: "blake3" from version 2 on; version 1 configs have no such field and use SHA-256. */
  packId?: PackIdScheme;
  /** What digest snapshots record of their whole image: "blake3" in versions 3 to 5, "blake3-chunks" from 6 on; earlier configs have no such field and use SHA-256. */
  imageDigest?: ImageDigestAlgorithm;
  /** Content-defined chunking of file snapshots (version 5 on): FastCDC with these sizes, its gear table derived from the blob-id key. */
  cdc?: ChunkerParameters;
}

/** The first format version that holds file snapshots (tree blobs, manifest version 3, `cdc` in the config). */
export const FILE_SNAPSHOTS_VERSION = 5;

/** The first format version whose image digest is made of each chunk's own BLAKE3 (`blake3-chunks`, manifest version 4). */
export const CHUNK_DIGEST_VERSION = 6;

/** The first format version whose blob ids key the hash of each blob's plain BLAKE3 (`blake3-keyed-digest`). */
export const DIGEST_BLOB_ID_VERSION = 7;

/** The blob id scheme a repository of this format version names in its config (none in version 1). */
export function blobIdSchemeForVersion(version: number): BlobIdScheme | undefined {
  if (version >= DIGEST_BLOB_ID_VERSION) return 'blake3-keyed-digest';
  return version >= 2 ? 'blake3-keyed' : undefined;
}

/** The image digest a repository of this format version names in its config (none before version 3). */
export function imageDigestForVersion(version: number): ImageDigestAlgorithm | undefined {
  if (version >= CHUNK_DIGEST_VERSION) return 'blake3-chunks';
  return version >= 3 ? 'blake3' : undefined;
}

/**
 * File content is cut at content-defined boundaries between 512 KiB and 8 MiB, 1 MiB on
 * average: an insertion moves only the boundaries around it, and chunks stay large enough
 * that a pack of 16 MiB holds a few and index memory stays small.
 */
export const DEFAULT_CDC: ChunkerParameters = { algorithm: 'fastcdc', min: 512 * 1024, avg: 1024 * 1024, max: 8 * 1024 * 1024 };

/** The chunker file snapshots of this repository use; a repository older than version 5 cannot hold them. */
export function cdcParametersOf(config: RepositoryConfig, location: string): ChunkerParameters {
  if (config.version < FILE_SNAPSHOTS_VERSION || !config.cdc) {
    throw new UsageError(`The repository at ${location} has format version ${config.version}, which cannot hold file snapshots (version ${FILE_SNAPSHOTS_VERSION} can): give the files job a target of its own and \`cairn init\` it`);
  }
  return config.cdc;
}

/**
 * Volume images are cut into 4 MiB chunks by default (as Proxmox Backup Server does for
 * block devices): on the shared benchmark volume, chunks of 1 MiB compressed 2.4% worse
 * (zstd sees less context per chunk) for 30% less added by the incremental backup.
 */
export const DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024;
export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;

/** The first format version whose config every key file authenticates (and whose prune marks packs). */
export const AUTHENTICATED_CONFIG_VERSION = 4;

/** The largest chunk size a config may name (a job chooses powers of two from 64 KiB up to it). */
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;

/** The blob id scheme a repository of this config uses. */
export function blobIdSchemeOf(config: RepositoryConfig): BlobIdScheme {
  return config.version === 1 ? 'hmac-sha256' : config.blobId!;
}

/** The pack naming scheme a repository of this config uses. */
export function packIdSchemeOf(config: RepositoryConfig): PackIdScheme {
  return config.version === 1 ? 'sha256' : config.packId!;
}

/** The image digest new snapshots in a repository of this config record. */
export function imageDigestOf(config: RepositoryConfig): ImageDigestAlgorithm {
  return config.version < 3 ? 'sha256' : config.imageDigest!;
}

/** The stored form of a config: written once by `init`, and authenticated byte for byte from version 4 on. */
export function encodeConfig(config: RepositoryConfig): Buffer {
  return Buffer.from(JSON.stringify(config, null, 2) + '\n');
}

/**
 * Parses and checks a stored config. Values outside what any cairn writes are damage, not
 * settings: a flipped byte must never become a chunk size the next backup uses.
 */
export function decodeConfig(raw: Buffer, location: string): RepositoryConfig {
  let config: RepositoryConfig;
  try {
    config = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new DamageError(`The repository config at ${location} is damaged: it is not valid JSON`, { cause: err });
  }
  if (typeof config !== 'object' || config === null || config.format !== 'cairn' || typeof config.version !== 'number') {
    throw new DamageError(`${location} does not hold a cairn repository config`);
  }
  if (config.version > FORMAT_VERSION) {
    throw new UnsupportedFormatError(`The repository at ${location} has format version ${config.version}; this cairn reads up to version ${FORMAT_VERSION}. Upgrade cairn to use it.`);
  }
  const problem = configProblem(config);
  if (problem) throw new DamageError(`The repository config at ${location} is damaged: ${problem}`);
  return config;
}

function configProblem(config: RepositoryConfig): string | undefined {
  if (!Number.isInteger(config.version) || config.version < 1) return `invalid format version ${JSON.stringify(config.version)}`;
  if (typeof config.id !== 'string' || !/^[0-9a-f]{64}$/.test(config.id)) return 'its repository id is not 64 hex digits';
  if (typeof config.created !== 'string' || Number.isNaN(Date.parse(config.created))) return 'its creation time is not a date';
  if (!isPowerOfTwoBetween(config.chunkSize, 512, MAX_CHUNK_SIZE)) return `chunk size ${JSON.stringify(config.chunkSize)} is not a power of two up to 16 MiB`;
  if (!Number.isInteger(config.packSize) || config.packSize < 1024 * 1024 || config.packSize > 1024 * 1024 * 1024) return `pack size ${JSON.stringify(config.packSize)} is out of range`;
  if (config.version >= 2 && (config.blobId !== blobIdSchemeForVersion(config.version) || config.packId !== 'blake3')) {
    return `it names unknown id schemes (blobId ${JSON.stringify(config.blobId)}, packId ${JSON.stringify(config.packId)})`;
  }
  if (config.version >= 3 && config.imageDigest !== imageDigestForVersion(config.version)) return `it names an unknown image digest ${JSON.stringify(config.imageDigest)}`;
  if (config.version >= FILE_SNAPSHOTS_VERSION && !validCdc(config.cdc)) return `it names no valid content-defined chunker (${JSON.stringify(config.cdc)})`;
  return undefined;
}

/** FastCDC sizes a reader can trust: powers of two, min < avg < max ≤ 16 MiB (a chunk must fit a pack buffer). */
function validCdc(cdc: ChunkerParameters | undefined): boolean {
  if (cdc?.algorithm !== 'fastcdc') return false;
  const { min, avg, max } = cdc;
  return isPowerOfTwoBetween(min, 4096, MAX_CHUNK_SIZE) && isPowerOfTwoBetween(avg, 4096, MAX_CHUNK_SIZE) && isPowerOfTwoBetween(max, 4096, MAX_CHUNK_SIZE) && min < avg && avg < max;
}

function isPowerOfTwoBetween(value: unknown, min: number, max: number): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max && (value & (value - 1)) === 0;
}
