import { inject, injectable } from '../vendor.js';
import { PluginError } from '../errors.js';
import { Clock, Logger, ProgressFactory, SourceRegistry } from '../services.js';
import type { OpenedSource, SourceFactory } from '../source.js';
import { EngineHooks, createBackupRunHooks, type BackupRun } from '../hooks.js';
import { HookRunner } from '../hook-runner.js';
import { PluginHost } from '../plugins/plugin-host.js';
import { Repositories } from '../repository/repositories.js';
import type { Repository } from '../repository/repository.js';
import { RepositoryLocks } from '../repository/lock.js';
import { runBackup, type BackupResult } from '../pipeline/backup.js';
import type { WorkerPool } from '../pipeline/worker-pool.js';
import type { LoadedJob } from '../job/job-loader.js';
import { JobRuns, type RunReport } from './job-runs.js';
import { PipelineWorkers } from './pipeline-workers.js';

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
  ) {}

  run(job: LoadedJob): Promise<RunReport<BackupResult>> {
    const run: BackupRun = { job: job.info, operation: 'backup', hooks: createBackupRunHooks() };
    return this.runs.run(run, async (tapFailures) => {
      await this.runner.before(this.hooks.backup, run);
      const result = await this.#backup(job, run);
      const saved = { id: result.snapshot, time: result.manifest.time, bytesRead: result.bytesRead, bytesAdded: result.bytesAdded, manifest: result.manifest };
      tapFailures.push(...(await this.runner.after(run.hooks.snapshotSaved, saved)));
      return result;
    });
  }

  async #backup(job: LoadedJob, run: BackupRun): Promise<BackupResult> {
    const sourceFactory = await this.#sourceFactory(job.config.source.type);
    return this.workers.withPool((pool) =>
      this.repositories.withRepository(job, async (repository) => {
        const source = await sourceFactory.open(job.config.source, { baseDir: job.baseDir });
        try {
          for (const warning of source.warnings) this.logger.warn(warning);
          await this.runner.before(run.hooks.sourceOpened, source);
          return await this.locks.withLock(repository, 'backup', false, () => this.#store(job, run, pool, repository, source));
        } finally {
          await source.dispose();
        }
      }),
    );
  }

  async #store(job: LoadedJob, run: BackupRun, pool: WorkerPool, repository: Repository, source: OpenedSource): Promise<BackupResult> {
    const index = await this.workers.prepare(pool, repository, job, 'write');
    for (const damaged of index.unreadable) this.logger.warn(`${damaged.message}; blobs only it named are stored again (\`cairn repair index\` rebuilds the index)`);
    const result = await runBackup({
      repository,
      index,
      pool,
      source,
      sourceType: job.config.source.type,
      jobName: job.info.name,
      chunkSize: job.config.chunkSize ?? repository.config.chunkSize,
      compression: job.config.compression?.type ?? 'none',
      progress: this.progress.create(),
      started: this.clock.now(),
      beforeSnapshot: (manifest) => this.runner.veto(run.hooks.beforeSnapshot, manifest),
    });
    for (const warning of result.warnings) this.logger.warn(warning);
    return result;
  }

  async #sourceFactory(type: string): Promise<SourceFactory> {
    await this.plugins.activate(`onSource:${type}`);
    const factory = this.sources.get(type);
    if (!factory) throw new PluginError(undefined, `No enabled plugin registered source type "${type}"`);
    return factory;
  }
}
