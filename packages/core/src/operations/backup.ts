import { inject, injectable } from '../vendor.js';
import { PluginError, UsageError } from '../errors.js';
import { isFileTree, type OpenedFileTree } from '../files/file-source.js';
import { findParent, runFileBackup, type FileBackupResult } from '../files/file-backup.js';
import { openFolderCache } from '../files/folder-cache.js';
import { Clock, Environment, Logger, ProgressFactory, SourceRegistry } from '../services.js';
import { cacheFolder } from '../validation/validator-cache.js';
import type { OpenedSource, SourceFactory } from '../source.js';
import { EngineHooks, createBackupRunHooks, type BackupRun } from '../hooks.js';
import { HookRunner } from '../hook-runner.js';
import { PluginHost } from '../plugins/plugin-host.js';
import { Repositories } from '../repository/repositories.js';
import type { BlobIndex, Repository } from '../repository/repository.js';
import { adoptOrphanPacks } from '../repository/orphan-packs.js';
import { cdcParametersOf } from '../repository/config.js';
import { RepositoryLocks } from '../repository/lock.js';
import { runBackup, type BackupResult } from '../pipeline/backup.js';
import type { WorkerPool } from '../pipeline/worker-pool.js';
import type { LoadedJob } from '../job/job-loader.js';
import { JobRuns, type RunReport } from './job-runs.js';
import { checkForgetOption } from '../retention/retention-tap.js';
import { PipelineWorkers } from './pipeline-workers.js';
import type { AnySnapshotManifest } from '../repository/snapshot.js';

/** The index a run stores against, and the adoption of the packs killed writers left, which goes on while it stores. */
interface StoreContext {
  index: BlobIndex;
  adoption: Promise<void>;
}

/** How often a running backup takes in index files that other writers wrote meanwhile. */
const FOLLOW_INDEX_EVERY_MS = 10_000;

export interface BackupOptions {
  /** The snapshot's time instead of the clock's (`backup --time`: imports, tests). */
  time?: Date;
  /** Tags recorded in the snapshot (`backup --tag`). */
  tags?: string[];
  /** Image around unreadable parts of the source (stored as zeros, listed in the manifest) instead of stopping. */
  rescue?: boolean;
  /** Apply the job's `retention` once the snapshot is saved (`backup --forget`; the RetentionTap does it). */
  forget?: boolean;
}

/** A volume image's result, or a file backup's (`isFileManifest(result.manifest)` tells). */
export type AnyBackupResult = BackupResult | FileBackupResult;

/** What a backup returns: its result, the failed `after` taps, and the run (for what taps recorded about it). */
export interface BackupReport extends RunReport<AnyBackupResult> {
  run: BackupRun;
}

/** `cairn backup`: runs a job once, through the run hooks, and saves a snapshot. */
@injectable()
export class BackupOperation {
  constructor(
    @inject(EngineHooks) private readonly hooks: Readonly<EngineHooks>,
    @inject(HookRunner) private readonly runner: HookRunner,
    @inject(JobRuns) private readonly runs: JobRuns,
    @inject(SourceRegistry) private readonly sources: SourceRegistry,
    @inject(PluginHost) private readonly plugins: PluginHost,
    @inject(Repositories) private readonly repositories: Repositories,
    @inject(PipelineWorkers) private readonly workers: PipelineWorkers,
    @inject(RepositoryLocks) private readonly locks: RepositoryLocks,
    @inject(ProgressFactory) private readonly progress: ProgressFactory,
    @inject(Logger) private readonly logger: Logger,
    @inject(Clock) private readonly clock: Clock,
    @inject(Environment) private readonly environment: Environment,
  ) {}

  /** Throws UsageError before anything runs when `forget` is asked of a job without a retention policy. */
  async run(job: LoadedJob, options: BackupOptions = {}): Promise<BackupReport> {
    checkForgetOption(job, options);
    const run: BackupRun = { job: job.info, operation: 'backup', hooks: createBackupRunHooks(), options: Object.freeze({ ...options }) };
    const report = await this.runs.run(run, async (tapFailures) => {
      await this.runner.before(this.hooks.backup, run);
      const result = await this.#backup(job, run, options);
      const saved = { id: result.snapshot, time: result.manifest.time, bytesRead: result.bytesRead, bytesAdded: result.bytesAdded, manifest: result.manifest };
      tapFailures.push(...(await this.runner.after(run.hooks.snapshotSaved, saved)));
      return result;
    });
    return { ...report, run };
  }

  async #backup(job: LoadedJob, run: BackupRun, options: BackupOptions): Promise<AnyBackupResult> {
    const sourceFactory = await this.#sourceFactory(job.config.source.type);
    // The source opens (a volume's used-block map is read) while the password's key is derived.
    const opening = sourceFactory.open(job.config.source, { baseDir: job.baseDir });
    // Its failure is thrown where the source is awaited, not reported as unhandled before.
    opening.catch(() => undefined);
    try {
      return await this.workers.withPool((pool) =>
        this.repositories.withRepository(job, async (repository) => {
          const source = await opening;
          for (const warning of source.warnings) this.logger.warn(warning);
          await this.runner.before(run.hooks.sourceOpened, source);
          if (isFileTree(source)) {
            if (options.rescue) throw new UsageError('--rescue images around unreadable sectors of a volume; a files job skips unreadable files on its own (the snapshot lists them, exit code 3)');
            // A repository too old for file snapshots is refused before the lock is taken.
            cdcParametersOf(repository.config, repository.location);
            return await this.locks.withLock(repository, 'backup', false, () => this.#storeFiles(job, run, pool, repository, source, options));
          }
          return await this.locks.withLock(repository, 'backup', false, () => this.#store(job, run, pool, repository, source, options));
        }),
      );
    } finally {
      // Whatever failed first, an opened source is closed; a failed opening was reported above or is moot.
      await opening.then((source) => source.dispose(), () => undefined);
    }
  }

  async #store(job: LoadedJob, run: BackupRun, pool: WorkerPool, repository: Repository, source: OpenedSource, options: BackupOptions): Promise<BackupResult> {
    return this.#storing(job, pool, repository, (context) =>
      runBackup({
        ...this.#common(job, run, repository, context, pool, options),
        source,
        chunkSize: job.config.chunkSize ?? repository.config.chunkSize,
        rescue: options.rescue ?? false,
      }),
    );
  }

  async #storeFiles(job: LoadedJob, run: BackupRun, pool: WorkerPool, repository: Repository, source: OpenedFileTree, options: BackupOptions): Promise<FileBackupResult> {
    const paths = source.roots.map((root) => root.toString('utf8'));
    return this.#storing(job, pool, repository, async (context) => {
      const parent = await findParent(repository, job.info.name, paths);
      const folderCache = await openFolderCache(cacheFolder(this.environment.env), repository, context.index, job.info.name, parent?.id);
      if (folderCache?.previous) this.logger.info(`Folder cache: ${folderCache.previous.count} folder(s) as of snapshot ${parent!.id.slice(0, 12)}`);
      if (folderCache?.notUsed) this.logger.info(`Folder cache not used: ${folderCache.notUsed}; every folder is compared with the parent's tree`);
      const result = await runFileBackup({
        ...this.#common(job, run, repository, context, pool, options),
        source,
        parent,
        ...(folderCache && { folderCache }),
        warn: (message) => this.logger.warn(message),
        note: (message) => this.logger.info(message),
      });
      // Only a cache less for the next run: it checks every folder against the parent's trees.
      await folderCache?.save(result.snapshot).catch((err: unknown) => this.logger.warn(`The folder cache could not be saved (${(err as Error).message}); the next backup of this job compares every folder with this snapshot's trees`));
      return result;
    });
  }

  /** What both pipelines are given: the repository, the job's settings and the run's veto, which waits for the adoption first. */
  #common(job: LoadedJob, run: BackupRun, repository: Repository, context: StoreContext, pool: WorkerPool, options: BackupOptions) {
    return {
      repository,
      index: context.index,
      blobsKnownAfter: context.adoption,
      pool,
      sourceType: job.config.source.type,
      jobName: job.info.name,
      compression: job.config.compression?.type ?? 'none',
      progress: this.progress.create(),
      started: options.time ?? this.clock.now(),
      ...(options.tags?.length && { tags: [...options.tags] }),
      beforeSnapshot: async (manifest: AnySnapshotManifest) => {
        await context.adoption;
        await this.runner.veto(run.hooks.beforeSnapshot, manifest);
      },
    };
  }

  /**
   * Loads the index, adopts what killed writers left while `store` runs, follows other writers'
   * new index files meanwhile, and logs the run's warnings.
   */
  async #storing<R extends { warnings: string[] }>(job: LoadedJob, pool: WorkerPool, repository: Repository, store: (context: StoreContext) => Promise<R>): Promise<R> {
    const listing = repository.listPacks();
    listing.catch(() => undefined); // awaited by the adoption; a failed index load ends the run first
    const index = await this.workers.prepare(pool, repository, job, 'write');
    // On a target with many packs the listing is the slow part (seconds for a terabyte on S3):
    // the run reads and hashes meanwhile, but tells no blob new before the adopted packs are
    // indexed (their blobs are not stored again, and the listing never names a pack of this
    // run's), and saves no snapshot before then either.
    const adoption = this.#adoptOrphans(repository, index, listing);
    adoption.catch(() => undefined); // awaited before the snapshot is saved, and below
    // Backups running into the same repository share what they store as soon as it is indexed.
    const following = followIndex(repository, index);
    try {
      const result = await store({ index, adoption });
      for (const warning of result.warnings) this.logger.warn(warning);
      return result;
    } finally {
      clearInterval(following);
      // Nothing of the run goes on once it returns (the lock is released next).
      await adoption.catch(() => undefined);
    }
  }

  async #adoptOrphans(repository: Repository, index: BlobIndex, listing: ReturnType<Repository['listPacks']>): Promise<void> {
    for (const problem of index.unreadable) this.logger.warn(`${problem.message}; the packs only it named are indexed again from their own headers (\`cairn repair index\` replaces it)`);
    const adopted = await adoptOrphanPacks(repository, index, listing);
    if (adopted.packs > 0) this.logger.info(`Indexed ${adopted.packs} pack(s) (${(adopted.bytes / 1e6).toFixed(1)} MB) that an interrupted backup left; their data is not stored again`);
  }

  async #sourceFactory(type: string): Promise<SourceFactory> {
    await this.plugins.activate(`onSource:${type}`);
    const factory = this.sources.get(type);
    if (!factory) throw new PluginError(undefined, `No enabled plugin registered source type "${type}"`);
    return factory;
  }
}

/** Takes in other writers' new index files every few seconds, one load at a time, until the interval is cleared. */
function followIndex(repository: Repository, index: BlobIndex): NodeJS.Timeout {
  let loading = false;
  return setInterval(() => {
    if (loading) return;
    loading = true;
    // A failed look is only a missed chance to deduplicate; the next one tries again.
    void repository
      .loadNewIndexFiles(index)
      .catch(() => undefined)
      .finally(() => (loading = false));
  }, FOLLOW_INDEX_EVERY_MS);
}
