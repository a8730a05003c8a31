import { inject, injectable } from '../vendor.js';
import { PluginError } from '../errors.js';
import { Clock, TargetRegistry } from '../services.js';
import type { Target } from '../target.js';
import { PluginHost } from '../plugins/plugin-host.js';
import { SecretReader } from '../job/secrets.js';
import type { LoadedJob } from '../job/job-loader.js';
import { Repository } from './repository.js';

/**
 * Opens the repository a job's target points at: activates the target's plugin, creates the
 * target, reads the password only once the target showed a repository this cairn reads, and
 * closes the target afterwards.
 */
@injectable()
export class Repositories {
  constructor(
    @inject(TargetRegistry) private readonly targets: TargetRegistry,
    @inject(PluginHost) private readonly plugins: PluginHost,
    @inject(SecretReader) private readonly secrets: SecretReader,
    @inject(Clock) private readonly clock: Clock,
  ) {}

  /** Creates the repository; RepositoryExistsError when there is one already. */
  async init(job: LoadedJob): Promise<{ id: string; location: string }> {
    return this.#withTarget(job, async (target) => {
      const repository = await Repository.init(target, await this.password(job), { chunkSize: job.config.chunkSize, now: this.clock.now() });
      return { id: repository.config.id, location: repository.location };
    });
  }

  /** Runs `fn` with the job's repository open; the target is closed afterwards, whatever happened. */
  async withRepository<T>(job: LoadedJob, fn: (repository: Repository) => Promise<T>): Promise<T> {
    // A missing or newer repository is reported before the password is read.
    return this.#withTarget(job, async (target) => fn(await Repository.open(target, () => this.password(job))));
  }

  password(job: LoadedJob): Promise<string> {
    return this.secrets.read(job.config.password, 'repository password', job.baseDir);
  }

  async #withTarget<T>(job: LoadedJob, fn: (target: Target) => Promise<T>): Promise<T> {
    const target = await this.#openTarget(job);
    try {
      return await fn(target);
    } finally {
      await target.dispose();
    }
  }

  async #openTarget(job: LoadedJob): Promise<Target> {
    const { type } = job.config.target;
    await this.plugins.activate(`onTarget:${type}`);
    const factory = this.targets.get(type);
    if (!factory) throw new PluginError(undefined, `No enabled plugin registered target type "${type}"`);
    return factory.create(job.config.target, {
      baseDir: job.baseDir,
      readSecret: (ref, what) => this.secrets.read(ref, what, job.baseDir),
    });
  }
}
