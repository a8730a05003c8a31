import { UsageError } from '../errors.js';
import { MAX_CHUNKS_PER_READ } from './fetch-groups.js';

/**
 * How much memory a backup, restore or check keeps in flight, chosen with `CAIRN_MEMORY`
 * (the worker pool carries it to the pipeline):
 * - `low` (the default): peak RSS about 200 MB on a local repository, whatever the volume's
 *   size; no slower there, since the workers, not the queues, set the pace.
 * - `high`: more chunks read ahead, packs uploading and pack reads in flight (about 40 to
 *   60 MB more); it pays where latency does, as on S3.
 */
export type MemoryProfileName = 'low' | 'high';

export interface MemoryProfile {
  name: MemoryProfileName;
  /** Chunk slots of a backup: read ahead of the workers, being sealed, waiting to be packed. */
  backupSlots: number;
  /** Pack uploads in flight at once, for a target that serves this many puts at once usefully. */
  uploadsInFlight(targetPuts: number): number;
  /** Chunk slots of a restore: fetched, being decoded, waiting to be written. */
  restoreSlots: number;
  /** Whole packs a `check --read-data` reads and verifies at once. */
  packsChecked: number;
}

/** Most pack uploads in flight at once in the low profile. */
const LOW_UPLOADS = 2;

const PROFILES: Record<MemoryProfileName, (workers: number) => MemoryProfile> = {
  low: (workers) => ({
    name: 'low',
    // Each worker sealing one chunk with the next queued for it, and one being read.
    backupSlots: 2 * workers + 1,
    // Each upload in flight holds a pack (16 MiB); a second one keeps a remote store busy while
    // the next pack fills, and a third was no faster against Ceph RGW or OpenSSH on loopback.
    uploadsInFlight: (targetPuts) => Math.min(LOW_UPLOADS, targetPuts),
    // One group being written while the next is fetched and decoded.
    restoreSlots: MAX_CHUNKS_PER_READ + workers,
    packsChecked: 2,
  }),
  high: (workers) => ({
    name: 'high',
    backupSlots: 2 * workers + 6,
    uploadsInFlight: (targetPuts) => Math.max(3, targetPuts),
    restoreSlots: 2 * MAX_CHUNKS_PER_READ + workers,
    packsChecked: 3,
  }),
};

/** The profile `CAIRN_MEMORY` names (`low` when unset) for a pool of `workers`; any other value is a usage error. */
export function memoryProfile(env: NodeJS.ProcessEnv, workers: number): MemoryProfile {
  const name = env.CAIRN_MEMORY?.trim() || 'low';
  if (!(name in PROFILES)) throw new UsageError(`CAIRN_MEMORY must be "low" or "high", not ${JSON.stringify(env.CAIRN_MEMORY)}`);
  return PROFILES[name as MemoryProfileName](workers);
}
