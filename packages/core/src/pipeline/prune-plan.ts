import { DamageError } from '../errors.js';
import { Keys } from '../repository/format.js';
import type { Repository, StoredPack } from '../repository/repository.js';
import { Packer } from './packer.js';
import type { PackUsage } from './prune-usage.js';
import type { WorkerPool } from './worker-pool.js';
import type { Progress } from './progress.js';

export interface PrunePolicy {
  /** A pack with at least this share of its bytes unused (0 to 1) has its used blobs copied to new packs, and goes. */
  repackThreshold: number;
  /** At most this many bytes are copied by one prune (the rest waits for the next). */
  maxRepackBytes: number;
}

export interface PrunePlan {
  /** Indexed packs no snapshot needs anything of. */
  unused: StoredPack[];
  /** Packs no index names: left by killed backups (a running backup's wait for it, see the sweep). */
  orphans: StoredPack[];
  /** Packs mostly unused: their used blobs are copied, then they go. */
  repack: PackUsage[];
  /** Packs that stay as they are. */
  kept: number;
  /** Bytes the used blobs of `repack` take. */
  repackBytes: number;
}

/** Decides each pack's fate. Packs already marked by an earlier prune are left to the sweep. */
export function planPrune(usage: readonly PackUsage[], marked: ReadonlySet<string>, policy: PrunePolicy): PrunePlan {
  const plan: PrunePlan = { unused: [], orphans: [], repack: [], kept: 0, repackBytes: 0 };
  const candidates: PackUsage[] = [];
  for (const entry of usage) {
    if (marked.has(entry.pack.id)) continue;
    if (!entry.indexed) plan.orphans.push(entry.pack);
    else if (entry.usedBytes === 0) plan.unused.push(entry.pack);
    else if (isMostlyUnused(entry, policy.repackThreshold)) candidates.push(entry);
    else plan.kept++;
  }
  // The emptiest packs first: they free the most for the bytes copied.
  candidates.sort((a, b) => a.usedBytes / a.pack.size - b.usedBytes / b.pack.size);
  for (const entry of candidates) {
    if (plan.repackBytes + entry.usedBytes > policy.maxRepackBytes) plan.kept++;
    else {
      plan.repack.push(entry);
      plan.repackBytes += entry.usedBytes;
    }
  }
  return plan;
}

/** Whether the share of a pack's bytes in unneeded blobs reaches the threshold; a pack whose every blob is needed is never copied. */
function isMostlyUnused(entry: PackUsage, threshold: number): boolean {
  return entry.unusedBytes > 0 && entry.unusedBytes / entry.pack.size >= threshold;
}

/**
 * Copies the used blobs of `packs` into new packs, each blob verified (decrypted,
 * decompressed, checked against its id) on the way so that damage is never copied; the
 * Packer indexes the new packs. Returns the bytes written. A damaged blob stops prune before
 * anything is marked: the old pack stays, and so does everything else.
 */
export async function repackPacks(repository: Repository, pool: WorkerPool, packs: readonly PackUsage[], progress: Progress): Promise<number> {
  const packer = new Packer(repository, pool.memory.uploadsInFlight(repository.concurrentPuts));
  progress.start('repack', packs.reduce((n, p) => n + p.pack.size, 0));
  try {
    for (const { pack, used } of packs) {
      const bytes = await repository.readPack(pack.id);
      for (const blob of used) {
        const sealed = bytes.subarray(blob.offset, blob.offset + blob.length);
        const id = blob.id.toString('hex');
        try {
          await pool.open(sealed, blob.rawLength, id);
        } catch (err) {
          throw new DamageError(`${Keys.pack(pack.id)} is damaged (blob ${id.slice(0, 12)}: ${(err as Error).message}); prune stops before deleting anything. Run \`cairn check --read-data\``, { cause: err });
        }
        await packer.add(blob.type, blob.id, sealed, blob.rawLength);
      }
      progress.advance(pack.size);
    }
    await packer.flush();
  } catch (err) {
    await packer.abandon();
    throw err;
  } finally {
    progress.done();
  }
  return packer.bytesWritten;
}
