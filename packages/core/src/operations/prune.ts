import { setTimeout as sleep } from 'node:timers/promises';
import { inject, injectable } from '../vendor.js';
import { Clock, Logger, ProgressFactory } from '../services.js';
import { Repositories } from '../repository/repositories.js';
import type { Repository } from '../repository/repository.js';
import { RepositoryLocks, type HeldLock } from '../repository/lock.js';
import { AUTHENTICATED_CONFIG_VERSION } from '../repository/config.js';
import { loadMarks, writeMark, type StoredMark } from '../repository/marks.js';
import { addReferencedBlobs, indexOf, packUsage, readIndexFiles, referencedSet } from '../pipeline/prune-usage.js';
import { planPrune, repackPacks, type PrunePlan, type PrunePolicy } from '../pipeline/prune-plan.js';
import { MERGE_ABOVE_FILES, sweepMarks, type SweepResult } from '../pipeline/prune-sweep.js';
import type { WorkerPool } from '../pipeline/worker-pool.js';
import type { LoadedJob } from '../job/job-loader.js';
import { PipelineWorkers } from './pipeline-workers.js';

export interface PruneOptions extends PrunePolicy {
  dryRun: boolean;
  /** How long to wait for operations that started before the mark (they may still use marked packs). */
  maxWaitMs: number;
}

export interface PruneResult {
  dryRun: boolean;
  snapshots: number;
  packs: { stored: number; unused: number; orphans: number; repacked: number; kept: number };
  /** Bytes of packs deleted, bytes written by repacking, and the difference. */
  bytesDeleted: number;
  bytesWritten: number;
  bytesFreed: number;
  /** Marked packs left for the next prune because an older operation was still running. */
  postponedPacks: number;
  /** Marked packs kept after all: a backup that finished meanwhile needs them. */
  keptAfterAll: number;
  indexFiles: { before: number; after: number };
  staleLocksRemoved: number;
  leftoversRemoved: number;
}

/**
 * Clock skew allowed between hosts: an operation whose lock started up to this long after a
 * mark was written is still treated as having started before it.
 */
const CLOCK_SKEW_MS = 5 * 60 * 1000;
/** Leftovers younger than this may belong to a writer that is still running. */
const LEFTOVER_AGE_MS = 60 * 60 * 1000;
const POLL_MS = 2000;

/**
 * `cairn prune`: deletes data no snapshot needs, in two phases (docs/FORMAT.md, Prune):
 * it marks unused and orphaned packs (after copying the used blobs of mostly unused ones),
 * then, once every operation that started before the mark has finished, deletes the marked
 * packs no snapshot written meanwhile needs. Backups may run throughout; from format 4 on,
 * prune takes a maintenance lock, which only another prune or a repair excludes.
 */
@injectable()
export class PruneOperation {
  constructor(
    @inject(Repositories) private readonly repositories: Repositories,
    @inject(PipelineWorkers) private readonly workers: PipelineWorkers,
    @inject(RepositoryLocks) private readonly locks: RepositoryLocks,
    @inject(ProgressFactory) private readonly progress: ProgressFactory,
    @inject(Clock) private readonly clock: Clock,
    @inject(Logger) private readonly logger: Logger,
  ) {}

  run(job: LoadedJob, options: PruneOptions): Promise<PruneResult> {
    return this.workers.withPool((pool) =>
      this.repositories.withRepository(job, async (repository) => {
        const mode = repository.config.version >= AUTHENTICATED_CONFIG_VERSION ? 'maintenance' : 'exclusive';
        const lock = await this.locks.acquire(repository, 'prune', mode);
        try {
          await this.workers.start(pool, repository, job, 'read');
          return await this.#prune(repository, pool, lock, options);
        } finally {
          await lock.dispose();
        }
      }),
    );
  }

  async #prune(repository: Repository, pool: WorkerPool, lock: HeldLock, options: PruneOptions): Promise<PruneResult> {
    const earlier = await loadMarks(repository);
    const marked = new Set(earlier.flatMap((m) => m.mark.packs));
    const indexFiles = await readIndexFiles(repository);
    const snapshots = await repository.listSnapshots();
    const known = new Map<string, string[]>();
    await addReferencedBlobs(repository, indexOf(indexFiles, marked), pool, snapshots, known);
    const stored = await repository.listPacks();
    const storedIds = new Set(stored.map((p) => p.id));
    const usage = packUsage(stored, indexFiles, referencedSet(known, snapshots), marked);
    const plan = planPrune(usage, marked, options);
    // Index entries of packs that are gone (and that nothing needs, or packUsage would have stopped) are dropped too.
    const vanished = [...indexFiles.packs.keys()].filter((id) => !storedIds.has(id) && !marked.has(id));
    const result = this.#emptyResult(options, snapshots.length, stored.length, plan, indexFiles.files.size);
    if (options.dryRun) return dryRunFigures(result, plan);

    result.bytesWritten = await repackPacks(repository, pool, plan.repack, this.progress.create());
    const toMark = [...plan.unused, ...plan.orphans, ...plan.repack.map((r) => r.pack)].map((p) => p.id).concat(vanished);
    const marks = toMark.length > 0 ? [...earlier, await writeMark(repository, toMark, this.clock.now())] : earlier;
    // With nothing to delete, a sweep still merges the small index files many writers leave.
    const mergeDue = indexFiles.files.size > MERGE_ABOVE_FILES;
    const sweep = await this.#sweepWhenSafe(repository, pool, lock, marks, known, options.maxWaitMs, mergeDue);
    Object.assign(result, this.#sweepFigures(sweep.result, marks, sweep.ready));
    result.bytesFreed = result.bytesDeleted - result.bytesWritten;
    result.staleLocksRemoved = (await this.locks.remove(repository, { all: false, except: lock.id })).length;
    result.leftoversRemoved = (await repository.removeLeftovers(new Date(this.clock.now().getTime() - LEFTOVER_AGE_MS))).count;
    return result;
  }

  /** Sweeps the marks no running operation can still use, waiting up to `maxWaitMs` for older operations to finish. */
  async #sweepWhenSafe(repository: Repository, pool: WorkerPool, lock: HeldLock, marks: StoredMark[], known: Map<string, string[]>, maxWaitMs: number, mergeDue: boolean) {
    const deadline = Date.now() + maxWaitMs;
    let ready = await this.#sweepable(repository, lock, marks);
    if (ready.length < marks.length && maxWaitMs > 0) this.logger.info('Waiting for operations that started before the prune mark to finish');
    while (ready.length < marks.length && Date.now() < deadline) {
      await sleep(POLL_MS);
      ready = await this.#sweepable(repository, lock, marks);
    }
    const allMarked = new Set(marks.flatMap((m) => m.mark.packs));
    const result = ready.length > 0 || mergeDue ? await sweepMarks(repository, pool, ready, allMarked, known) : undefined;
    return { ready, result };
  }

  /** Marks that no live operation (other than this prune) can have missed: each started after the mark, allowing for skew. */
  async #sweepable(repository: Repository, own: HeldLock, marks: StoredMark[]): Promise<StoredMark[]> {
    const live = (await this.locks.list(repository)).filter((l) => l.id !== own.id && !l.stale);
    const earliest = Math.min(...live.map((l) => Date.parse(l.info.started ?? l.info.time)));
    return marks.filter((m) => Date.parse(m.mark.time) + CLOCK_SKEW_MS <= earliest);
  }

  #emptyResult(options: PruneOptions, snapshots: number, stored: number, plan: PrunePlan, indexFiles: number): PruneResult {
    return {
      dryRun: options.dryRun,
      snapshots,
      packs: { stored, unused: plan.unused.length, orphans: plan.orphans.length, repacked: plan.repack.length, kept: plan.kept },
      bytesDeleted: 0,
      bytesWritten: 0,
      bytesFreed: 0,
      postponedPacks: 0,
      keptAfterAll: 0,
      indexFiles: { before: indexFiles, after: indexFiles },
      staleLocksRemoved: 0,
      leftoversRemoved: 0,
    };
  }

  #sweepFigures(sweep: SweepResult | undefined, marks: StoredMark[], ready: StoredMark[]): Partial<PruneResult> {
    const postponed = marks.filter((m) => !ready.includes(m)).reduce((n, m) => n + m.mark.packs.length, 0);
    if (!sweep) return { postponedPacks: postponed };
    return { bytesDeleted: sweep.deletedBytes, keptAfterAll: sweep.keptPacks, postponedPacks: postponed, indexFiles: { before: sweep.indexFilesBefore, after: sweep.indexFilesAfter } };
  }
}

function dryRunFigures(result: PruneResult, plan: PrunePlan): PruneResult {
  const bytesDeleted = [...plan.unused, ...plan.orphans, ...plan.repack.map((r) => r.pack)].reduce((n, p) => n + p.size, 0);
  return { ...result, bytesDeleted, bytesWritten: plan.repackBytes, bytesFreed: bytesDeleted - plan.repackBytes };
}
