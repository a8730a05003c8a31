import type { BlobLocation } from '../repository/repository.js';

/** Largest single ranged read of a pack: neighbouring blobs are fetched together up to this. */
export const MAX_READ = 8 * 1024 * 1024;
/** Chunks per ranged read (a restore holds a slot for each chunk of a read in flight). */
export const MAX_CHUNKS_PER_READ = 8;

/** Neighbouring blobs of one pack, fetched with one ranged read. */
export interface FetchGroup {
  pack: string;
  offset: number;
  length: number;
  chunks: Array<{ index: number; id: string; location: BlobLocation }>;
}

/** Whether a blob can join a group's ranged read: it follows the group in the same pack, and the read stays bounded. */
export function joinsFetchGroup(group: FetchGroup, location: BlobLocation): boolean {
  return (
    group.pack === location.pack &&
    group.offset + group.length === location.offset &&
    group.chunks.length < MAX_CHUNKS_PER_READ &&
    group.length + location.length <= MAX_READ
  );
}
