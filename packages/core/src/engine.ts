import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Container } from './vendor.js';
import { CodecRegistry, Clock, Logger, SourceRegistry, TargetRegistry } from './services.js';
import { EngineHooks, createBackupRunHooks, createEngineHooks, createRestoreRunHooks, type JobInfo } from './hooks.js';
import { JobFileError, PluginError, UsageError } from './errors.js';
import type { CodecRegistration, CodecSettings } from './codec.js';
import type { SecretRef, Target, TargetSettings } from './target.js';
import type { SourceSettings } from './source.js';
import { PluginHost } from './plugins/plugin-host.js';
import { DefaultCodecRegistry, DefaultSourceRegistry, DefaultTargetRegistry } from './plugins/registries.js';
import { createJobValidator, type JobValidator } from './job/job-schema.js';
import { readSecret } from './job/secrets.js';
import { tapJobCommands } from './job/job-commands.js';
import { Repository, blobIdSchemeOf, type BlobIndex, type SnapshotSummary } from './repository/repository.js';
import { acquireLock } from './repository/lock.js';
import { WorkerPool } from './pipeline/worker-pool.js';
import { runBackup, type BackupResult } from './pipeline/backup.js';
import { runRestore, type RestoreWindow } from './pipeline/restore.js';
import type { ImageDigest, SnapshotManifest } from './repository/snapshot.js';
import { runCheck, type CheckReport } from './pipeline/check.js';
import { openDestination } from './pipeline/destination.js';
import { silentProgress, type Progress } from './pipeline/progress.js';
import { CODEC_NONE } from './repository/format.js';

export interface JobConfig {
  name: string;
  source: SourceSettings;
  target: TargetSettings;
  compression?: CodecSettings;
  password: SecretRef;
  chunkSize?: number;
  hooks?: { before?: string[][]; after?: string[][] };
}

export interface RestoreOptions {
  force?: boolean;
  /** Restore only this partition of a disk snapshot. */
  partition?: number;
  /** Write zeros over unused blocks on a block device. */
  zeroUnused?: boolean;
  /** Size of the restored image file, when larger than the image (a bigger virtual disk). */
  size?: number;
}

export interface RestoreResult {
  snapshot: string;
  destination: string;
  bytesWritten: number;
  /** The verified digest of the whole restored image (a partition is verified blob by blob instead). */
  imageDigest?: ImageDigest;
  partition?: number;
}

function partitionWindow(id: string, manifest: SnapshotManifest, index: number): RestoreWindow {
  const partition = manifest.layout.partitions.find((p) => p.index === index);
  if (!partition) {
    const numbers = manifest.layout.partitions.map((p) => p.index);
    throw new UsageError(`Snapshot ${id.slice(0, 12)} has no partition ${index}${numbers.length ? ` (it has ${numbers.join(', ')})` : ' (it is not a partitioned disk)'}`);
  }
  return { offset: partition.offset, length: partition.size };
}

export interface LoadedJob {
  info: JobInfo;
  config: JobConfig;
  baseDir: string;
}

export interface EngineOptions {
  pluginsFile: string;
  coreVersion: string;
  env: NodeJS.ProcessEnv;
  logger: Logger;
  /** Makes a progress display for one operation; silent by default. */
  progress?: () => Progress;
}

export const NONE_CODEC: CodecRegistration = {
  name: 'none',
  headerId: CODEC_NONE,
  // Workers import built JavaScript, also when this module runs from source in unit tests.
  moduleUrl: new URL(import.meta.url.endsWith('.ts') ? '../dist/codecs/none.js' : './codecs/none.js', import.meta.url).href,
};
const DEFAULT_COMPRESSION: CodecSettings = { type: 'zstd', level: 3 };

/**
 * The composition root of one CLI invocation: the container with the core services, the
 * plugin host, and the operations the commands call.
 */
export class Engine {
  #validator: JobValidator | undefined;

  private constructor(
    readonly container: Container,
    readonly hooks: Readonly<EngineHooks>,
    readonly host: PluginHost,
    private readonly options: EngineOptions,
  ) {}

  static async create(options: EngineOptions): Promise<Engine> {
    const container = new Container({ defaultScope: 'Singleton' });
    const hooks = createEngineHooks();
    container.bind(Logger).toConstantValue(options.logger);
    container.bind(Clock).toConstantValue({ now: () => new Date() });
    container.bind(EngineHooks).toConstantValue(hooks);
    container.bind(TargetRegistry).toConstantValue(new DefaultTargetRegistry());
    container.bind(SourceRegistry).toConstantValue(new DefaultSourceRegistry());
    const codecs = new DefaultCodecRegistry();
    codecs.register(NONE_CODEC);
    container.bind(CodecRegistry).toConstantValue(codecs);
    const host = await PluginHost.discover(resolve(options.pluginsFile), container, options.coreVersion);
    const engine = new Engine(container, hooks, host, options);
    tapJobCommands(hooks, options.logger, (job) => dirname(job.file));
    return engine;
  }

  get validator(): JobValidator {
    return (this.#validator ??= createJobValidator(this.host));
  }

  get logger(): Logger {
    return this.options.logger;
  }

  #progress(): Progress {
    return this.options.progress?.() ?? silentProgress;
  }

  /** Reads and validates a job file; no other I/O happens before this succeeds. */
  async loadJob(file: string): Promise<LoadedJob> {
    const path = resolve(file);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      throw new JobFileError(`Cannot read the job file ${path}: ${(err as Error).message}`, { cause: err });
    }
    let job: unknown;
    try {
      job = JSON.parse(text);
    } catch (err) {
      throw new JobFileError(`The job file ${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
    if (job && typeof job === 'object' && !('compression' in job) && this.host.contributions('codecs').some((c) => c.type === DEFAULT_COMPRESSION.type)) {
      (job as Record<string, unknown>).compression = { ...DEFAULT_COMPRESSION };
    }
    const problems = this.validator.validate(job);
    if (problems.length > 0) {
      const broken = this.host.failedPlugins();
      const hint = broken.length > 0 ? `\nThese plugins could not be loaded:\n${broken.map((p) => `  ${p.problems.join('; ')}`).join('\n')}` : '';
      throw new JobFileError(`The job file ${path} is invalid:\n${problems.map((p) => `  ${p}`).join('\n')}${hint}`);
    }
    const config = job as JobConfig;
    return { info: { name: config.name, file: path, job: job as Record<string, unknown> }, config, baseDir: dirname(path) };
  }

  async #contribution<T>(point: 'onTarget' | 'onSource', type: string, get: () => T | undefined): Promise<T> {
    await this.host.activate(`${point}:${type}`);
    const value = get();
    if (!value) throw new PluginError(undefined, `No enabled plugin registered ${point === 'onTarget' ? 'target' : 'source'} type "${type}"`);
    return value;
  }

  async openTarget(job: LoadedJob): Promise<Target> {
    const registry = this.container.get<TargetRegistry>(TargetRegistry);
    const factory = await this.#contribution('onTarget', job.config.target.type, () => registry.get(job.config.target.type));
    return factory.create(job.config.target, {
      baseDir: job.baseDir,
      readSecret: (ref, what) => readSecret(ref, what, job.baseDir, this.options.env),
    });
  }

  password(job: LoadedJob): Promise<string> {
    return readSecret(job.config.password, 'repository password', job.baseDir, this.options.env);
  }

  async withRepository<T>(job: LoadedJob, fn: (repository: Repository) => Promise<T>): Promise<T> {
    const target = await this.openTarget(job);
    try {
      // A missing or newer repository is reported before the password is read.
      const repository = await Repository.open(target, () => this.password(job));
      return await fn(repository);
    } finally {
      await target.dispose();
    }
  }

  async init(job: LoadedJob): Promise<{ id: string; location: string }> {
    const target = await this.openTarget(job);
    try {
      const repository = await Repository.init(target, await this.password(job), { chunkSize: job.config.chunkSize });
      return { id: repository.config.id, location: target.location };
    } finally {
      await target.dispose();
    }
  }

  /** Codecs a worker needs: the job's codec for writing, and for reading every codec the plugins provide. */
  async #codecSetup(job: LoadedJob, forReading: boolean): Promise<{ codecs: CodecRegistration[]; write: CodecSettings; writeId: number }> {
    const registry = this.container.get<CodecRegistry>(CodecRegistry);
    const write = job.config.compression ?? { type: 'none' };
    const types = forReading ? this.host.contributions('codecs').map((c) => c.type) : [write.type];
    for (const type of types) if (type !== 'none') await this.host.activate(`onCodec:${type}`);
    const registration = registry.byName(write.type);
    if (!registration) throw new PluginError(undefined, `No enabled plugin registered codec "${write.type}"`);
    return { codecs: registry.all(), write, writeId: registration.headerId };
  }

  /**
   * Runs `fn` with a worker pool whose threads start now, so that they load their code while
   * plugins, the repository (scrypt) and the source open; `#initPoolAndLoadIndex` gives them their keys.
   */
  async #withPool<T>(fn: (pool: WorkerPool) => Promise<T>): Promise<T> {
    const pool = WorkerPool.spawn();
    try {
      return await fn(pool);
    } finally {
      await pool.dispose();
    }
  }

  /** Gives the pool its keys and codecs while the index loads; resolves to the index. */
  async #initPoolAndLoadIndex(pool: WorkerPool, repository: Repository, job: LoadedJob, forReading: boolean): Promise<BlobIndex> {
    const initialised = this.#codecSetup(job, forReading).then((setup) =>
      pool.init({ masterKey: repository.masterKey, blobIdScheme: blobIdSchemeOf(repository.config), codecs: setup.codecs, writeCodec: setup.write, writeCodecId: setup.writeId }),
    );
    const [, index] = await Promise.all([initialised, repository.loadIndex()]);
    return index;
  }

  async backup(job: LoadedJob): Promise<BackupResult> {
    try {
      await this.hooks.beforeRun.promise(job.info);
      const result = await this.#backup(job);
      await this.hooks.afterRun.promise(job.info, { ok: true });
      return result;
    } catch (err) {
      await this.hooks.failed.promise(job.info, err).catch(() => undefined);
      // afterRun runs even on failure; the backup's own error is the one to report.
      await this.hooks.afterRun.promise(job.info, { ok: false, error: err }).catch((afterErr: unknown) => {
        this.logger.error((afterErr as Error).message);
      });
      throw err;
    }
  }

  async #backup(job: LoadedJob): Promise<BackupResult> {
    const sources = this.container.get<SourceRegistry>(SourceRegistry);
    const sourceFactory = await this.#contribution('onSource', job.config.source.type, () => sources.get(job.config.source.type));
    return this.#withPool((pool) => this.withRepository(job, async (repository) => {
      const source = await sourceFactory.open(job.config.source, { baseDir: job.baseDir });
      try {
        for (const warning of source.warnings) this.logger.warn(warning);
        const run = { job: job.info, hooks: createBackupRunHooks() };
        this.hooks.backup.call(run);
        await run.hooks.sourceOpened.promise(source);
        const lock = await acquireLock(repository, 'backup', false);
        try {
          const index = await this.#initPoolAndLoadIndex(pool, repository, job, false);
          const result = await runBackup({
            repository,
            index,
            pool,
            source,
            sourceType: job.config.source.type,
            job: job.info,
            hooks: run.hooks,
            chunkSize: job.config.chunkSize ?? repository.config.chunkSize,
            compression: job.config.compression?.type ?? 'none',
            progress: this.#progress(),
          });
          for (const warning of result.warnings) this.logger.warn(warning);
          return result;
        } finally {
          await lock.dispose();
        }
      } finally {
        await source.dispose();
      }
    }));
  }

  snapshots(job: LoadedJob): Promise<SnapshotSummary[]> {
    return this.withRepository(job, (repository) => repository.listSnapshots());
  }

  async restore(job: LoadedJob, ref: string, to: string, options: RestoreOptions = {}): Promise<RestoreResult> {
    return this.#withPool((pool) => this.withRepository(job, async (repository) => {
      const { id, manifest } = await repository.resolveSnapshot(ref);
      const window = options.partition === undefined ? undefined : partitionWindow(id, manifest, options.partition);
      const size = window ? window.length : Math.max(manifest.size, options.size ?? 0);
      if (options.size !== undefined && window) throw new UsageError('--size applies to whole images, not to --partition');
      // The source plugin taps the restore hooks (e.g. to move a GPT backup header to the end of a larger disk).
      await this.host.activate(`onSource:${manifest.source.type}`).catch((err: unknown) => this.logger.warn((err as Error).message));
      const lock = await acquireLock(repository, 'restore', false);
      try {
        const index = await this.#initPoolAndLoadIndex(pool, repository, job, true);
        const destination = await openDestination(resolve(to), size, options.force ?? false);
        const run = { job: job.info, hooks: createRestoreRunHooks() };
        this.hooks.restore.call(run);
        const { bytesWritten } = await runRestore({
          repository,
          index,
          pool,
          snapshot: id,
          manifest,
          destination,
          hooks: run.hooks,
          progress: this.#progress(),
          window,
          zeroUnused: options.zeroUnused,
        });
        return { snapshot: id, destination: destination.path, bytesWritten, ...(window ? { partition: options.partition } : { imageDigest: manifest.imageDigest }) };
      } finally {
        await lock.dispose();
      }
    }));
  }

  async show(job: LoadedJob, ref: string): Promise<SnapshotSummary> {
    return this.withRepository(job, (repository) => repository.resolveSnapshot(ref));
  }

  async check(job: LoadedJob, readData: boolean): Promise<CheckReport> {
    return this.#withPool((pool) => this.withRepository(job, async (repository) => {
      const lock = await acquireLock(repository, 'check', false);
      try {
        const index = await this.#initPoolAndLoadIndex(pool, repository, job, true);
        return await runCheck(repository, index, pool, readData, this.#progress());
      } finally {
        await lock.dispose();
      }
    }));
  }

  async dispose(): Promise<void> {
    await this.host.dispose();
  }
}
