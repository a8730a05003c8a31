import type { VolumeLayout } from '../source.js';

/** The manifest of one backup run, stored encrypted as snapshots/<id> (docs/FORMAT.md). */
export interface SnapshotManifest {
  version: 1;
  /** ISO 8601 time the backup started. */
  time: string;
  hostname: string;
  job: string;
  source: { type: string; path: string };
  layout: VolumeLayout;
  /** Size of the logical image in bytes. */
  size: number;
  chunkSize: number;
  chunkCount: number;
  /** Ids of the chunk-map blobs, in order; together they hold `chunkCount` records. */
  chunkMaps: string[];
  /** sha256 of the whole logical image (unused chunks read as zeros). */
  sha256: string;
  /** Name of the codec new blobs were written with. */
  compression: string;
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
}
