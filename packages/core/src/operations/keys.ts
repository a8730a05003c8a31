import { inject, injectable } from '../vendor.js';
import { Clock } from '../services.js';
import type { SecretRef } from '../target.js';
import { Repositories } from '../repository/repositories.js';
import { SecretReader } from '../job/secrets.js';
import type { LoadedJob } from '../job/job-loader.js';

export interface KeyInfo {
  id: string;
  created: string;
  hostname: string;
  username: string;
  /** The key the job's password opened. */
  current: boolean;
}

/** `cairn key`: the passwords that open a repository. */
@injectable()
export class KeyOperation {
  constructor(
    @inject(Repositories) private readonly repositories: Repositories,
    @inject(SecretReader) private readonly secrets: SecretReader,
    @inject(Clock) private readonly clock: Clock,
  ) {}

  list(job: LoadedJob): Promise<KeyInfo[]> {
    return this.repositories.withRepository(job, (repository) => repository.listKeys());
  }

  /** Adds a password read from `newPassword` (a relative file is relative to the working folder); returns the new key's id. */
  add(job: LoadedJob, newPassword: SecretRef): Promise<string> {
    return this.repositories.withRepository(job, async (repository) => {
      const password = await this.secrets.read(newPassword, 'new password');
      return repository.addPassword(password, this.clock.now());
    });
  }
}
