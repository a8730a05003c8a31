import { inject, injectable } from '../vendor.js';
import { PluginError } from '../errors.js';
import { CodecRegistry, Environment } from '../services.js';
import type { CodecRegistration, CodecSettings } from '../codec.js';
import { PluginHost } from '../plugins/plugin-host.js';
import { blobIdSchemeOf, type BlobIndex, type Repository } from '../repository/repository.js';
import { WorkerPool } from '../pipeline/worker-pool.js';
import type { LoadedJob } from '../job/job-loader.js';

/** Whether a pool writes new blobs (with the job's codec) or reads existing ones (with every codec the plugins provide). */
export type PoolPurpose = 'write' | 'read';

/** Starts the worker threads of an operation and hands them keys and codecs. */
@injectable()
export class PipelineWorkers {
  constructor(
    @inject(CodecRegistry) private readonly codecs: CodecRegistry,
    @inject(PluginHost) private readonly plugins: PluginHost,
    @inject(Environment) private readonly environment: Environment,
  ) {}

  /**
   * Runs `fn` with a worker pool whose threads start now, so that they load their code while
   * plugins, the repository (scrypt) and the source open; `prepare` then gives them their keys.
   */
  async withPool<T>(fn: (pool: WorkerPool) => Promise<T>): Promise<T> {
    const pool = WorkerPool.spawn(undefined, this.environment.env);
    try {
      return await fn(pool);
    } finally {
      await pool.dispose();
    }
  }

  /** Gives the pool its keys and codecs while the repository's index loads; resolves to the index. */
  async prepare(pool: WorkerPool, repository: Repository, job: LoadedJob, purpose: PoolPurpose): Promise<BlobIndex> {
    const [, index] = await Promise.all([this.start(pool, repository, job, purpose), repository.loadIndex(purpose)]);
    return index;
  }

  /** Gives the pool its keys and codecs, for an operation that reads the index its own way (prune). */
  async start(pool: WorkerPool, repository: Repository, job: LoadedJob, purpose: PoolPurpose): Promise<void> {
    const setup = await this.#codecSetup(job, purpose);
    await pool.init({ masterKey: repository.masterKey, blobIdScheme: blobIdSchemeOf(repository.config), ...setup });
  }

  async #codecSetup(job: LoadedJob, purpose: PoolPurpose): Promise<{ codecs: CodecRegistration[]; writeCodec: CodecSettings; writeCodecId: number }> {
    const writeCodec = job.config.compression ?? { type: 'none' };
    const types = purpose === 'read' ? this.plugins.contributions('codecs').map((c) => c.type) : [writeCodec.type];
    for (const type of types) if (type !== 'none') await this.plugins.activate(`onCodec:${type}`);
    const registration = this.codecs.byName(writeCodec.type);
    if (!registration) throw new PluginError(undefined, `No enabled plugin registered codec "${writeCodec.type}"`);
    return { codecs: this.codecs.all(), writeCodec, writeCodecId: registration.headerId };
  }
}
