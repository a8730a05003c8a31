import { inject, injectable } from '../vendor.js';
import { Logger } from '../services.js';
import { Repositories } from '../repository/repositories.js';
import type { DamagedObject } from '../repository/repository.js';
import { RepositoryLocks } from '../repository/lock.js';
import { isFileManifest } from '../repository/snapshot.js';
import { UsageError } from '../errors.js';
import type { LoadedJob } from '../job/job-loader.js';
import { TreeReader } from '../files/tree-reader.js';
import { BlobStream } from '../files/content-reader.js';
import { dumpPath, type DumpOutcome } from '../files/dump.js';
import { PipelineWorkers } from './pipeline-workers.js';

export interface DumpResult extends DumpOutcome {
  snapshot: string;
  path: string;
}

/** `cairn dump`: one file's content, or a folder as tar, of a file snapshot, to a stream; under a shared 'dump' lock. */
@injectable()
export class DumpOperation {
  constructor(
    @inject(Repositories) private readonly repositories: Repositories,
    @inject(PipelineWorkers) private readonly workers: PipelineWorkers,
    @inject(RepositoryLocks) private readonly locks: RepositoryLocks,
    @inject(Logger) private readonly logger: Logger,
  ) {}

  /** `ref` is `latest`, an id or an id prefix; `path` an absolute path in the snapshot; `write` takes the output. */
  run(job: LoadedJob, ref: string, path: string, write: (bytes: Buffer) => Promise<void>): Promise<DumpResult> {
    if (!path.startsWith('/')) throw new UsageError(`The path to dump must be absolute, as the snapshot stores it (e.g. /home/u/notes.txt), not ${path}`);
    return this.workers.withPool((pool) =>
      this.repositories.withRepository(job, async (repository) => {
        const damaged: DamagedObject[] = [];
        const { id, manifest } = await repository.resolveSnapshot(ref, damaged);
        for (const object of damaged) this.logger.warn(`${object.message}; it is left out (dumping from snapshot ${id.slice(0, 12)}, which does not need it)`);
        if (!isFileManifest(manifest)) throw new UsageError(`Snapshot ${id.slice(0, 12)} is a volume image; \`cairn dump\` reads file snapshots (\`cairn restore\` or \`cairn mount\` an image)`);
        return this.locks.withLock(repository, 'dump', 'shared', async () => {
          const index = await this.workers.prepare(pool, repository, job, 'read');
          const reader = new TreeReader(repository, index, pool);
          const outcome = await dumpPath({ reader, blobs: new BlobStream(repository, index, pool), snapshot: id, manifest, path, write });
          return { snapshot: id, path, ...outcome };
        });
      }),
    );
  }
}
