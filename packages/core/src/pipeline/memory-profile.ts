import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { UsageError } from '../errors.js';
import { MAX_CHUNKS_PER_READ } from './fetch-groups.js';

/**
 * How much memory a backup, restore or check keeps in flight, chosen with `CAIRN_MEMORY`
 * (the worker pool carries it to the pipeline):
 * - `low` (the default): peak RSS about 200 MB on a local repository, whatever the volume's
 *   size; no slower there, since the workers, not the queues, set the pace.
 * - `high`: more chunks read ahead, packs uploading and pack reads in flight, and V8's heap
 *   left to V8 (about 40 to 100 MB more); it pays where latency does, as on S3.
 * The low profile also caps glibc's malloc arenas, as the process starts (malloc-arenas.ts).
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
  /**
   * Bytes of a files restore's ring of plaintext fetched ahead of the writes. Every page of it is
   * resident once it has wrapped.
   */
  fileRestoreRing: number;
  /**
   * Entries a files restore plans and writes together: the batch, and what is planned for each
   * of its entries, is held until it is written.
   */
  fileRestoreBatch: number;
  /** How far past what the last full collection kept V8 lets the heap grow, in percent; undefined: V8's own choice. */
  heapGrowthPercent: number | undefined;
  /** The young generation (both semi-spaces) stops growing once this large; undefined: at V8's 32 MiB. */
  youngGenerationMiB: number | undefined;
}

const MiB = 1024 * 1024;
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
    // 16 MiB restored the corpus as fast as 32 from a local repository, 20 MB lower at the peak.
    fileRestoreRing: 16 * MiB,
    // 2048 restored the corpus as fast as 8192 from a local repository, 10 MB lower at the peak.
    fileRestoreBatch: 2048,
    // V8 lets a busy heap grow to up to 4 times what survived the last full collection: a
    // first file backup of the corpus ended with 65 MB of old generation, about 30 of it live.
    // At 25 % it ended at 43-48 MB, within the noise of the run's time.
    heapGrowthPercent: 25,
    // A file backup's young generation grows to V8's 32 MiB, nearly all of it garbage at any
    // time; capped at 8 MiB the peak was 25-35 MB lower (smaller still, more was promoted).
    youngGenerationMiB: 8,
  }),
  high: (workers) => ({
    name: 'high',
    backupSlots: 2 * workers + 6,
    uploadsInFlight: (targetPuts) => Math.max(3, targetPuts),
    restoreSlots: 2 * MAX_CHUNKS_PER_READ + workers,
    packsChecked: 3,
    fileRestoreRing: 32 * MiB,
    fileRestoreBatch: 8192,
    heapGrowthPercent: undefined,
    youngGenerationMiB: undefined,
  }),
};

/** The profile `CAIRN_MEMORY` names (`low` when unset) for a pool of `workers`; any other value is a usage error. */
export function memoryProfile(env: NodeJS.ProcessEnv, workers: number): MemoryProfile {
  const name = env.CAIRN_MEMORY?.trim() || 'low';
  if (!(name in PROFILES)) throw new UsageError(`CAIRN_MEMORY must be "low" or "high", not ${JSON.stringify(env.CAIRN_MEMORY)}`);
  return PROFILES[name as MemoryProfileName](workers);
}

/**
 * Applies the profile's heap limits to this process's V8 (its worker threads included). V8
 * reads the growing factor at every full collection, so it takes effect at run time.
 */
export function applyHeapLimits(profile: MemoryProfile): void {
  if (profile.heapGrowthPercent !== undefined) setFlagsFromString(`--heap-growing-percent=${profile.heapGrowthPercent}`);
  if (profile.youngGenerationMiB !== undefined) capYoungGeneration(profile.youngGenerationMiB * 1024 * 1024);
}

/** How often the young generation's size is looked at until it reaches the cap, and after. */
const YOUNG_GENERATION_CHECK_MS = 50;
const YOUNG_GENERATION_HOLD_MS = 1000;
let youngGenerationCap: number | undefined;

/**
 * The young generation's largest size is fixed when the heap is set up, and a command cannot
 * pass flags to its own start; but V8 grows it by `--semi-space-growth-factor` at a time, read
 * at every growth, so a factor of 1 stops it where it is. Each new isolate (a worker thread
 * starting) sets that factor back to at least 2: it is set again while the process lives.
 */
function capYoungGeneration(bytes: number): void {
  const watching = youngGenerationCap !== undefined;
  youngGenerationCap = bytes;
  if (watching) return;
  // Often while it grows; then seldom (a daemon idles for hours), and each pooled worker calls
  // holdYoungGeneration itself as its thread comes online.
  const watch = setInterval(() => {
    if (!holdYoungGeneration()) return;
    clearInterval(watch);
    setInterval(holdYoungGeneration, YOUNG_GENERATION_HOLD_MS).unref();
  }, YOUNG_GENERATION_CHECK_MS).unref();
}

/** Stops the young generation's growth if it reached the cap (again after worker threads started); true if it has. */
export function holdYoungGeneration(): boolean {
  if (youngGenerationCap === undefined) return false;
  const size = getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size ?? 0;
  if (size >= youngGenerationCap) setFlagsFromString('--semi-space-growth-factor=1');
  return size >= youngGenerationCap;
}
