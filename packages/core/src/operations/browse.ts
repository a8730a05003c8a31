import { inject, injectable } from '../vendor.js';
import { SnapshotNotFoundError } from '../errors.js';
import { Logger } from '../services.js';
import { Repositories } from '../repository/repositories.js';
import type { DamagedObject, Repository } from '../repository/repository.js';
import { RepositoryLocks } from '../repository/lock.js';
import { isFileManifest, requireFileManifest, type FileSnapshotManifest } from '../repository/snapshot.js';
import { TreeReader } from '../files/tree-reader.js';
import { displayName } from '../files/tree.js';
import { listPath, type ListOptions, type Listing } from '../files/list.js';
import { findVersions, type FoundVersion } from '../files/find.js';
import { diffTrees, type SnapshotDiff } from '../files/diff.js';
import type { PathMatcher } from '../files/glob.js';
import type { LoadedJob } from '../job/job-loader.js';
import { PipelineWorkers } from './pipeline-workers.js';

/** A file snapshot, resolved from `latest`, an id or a prefix. */
export interface FileSnapshotRef {
  id: string;
  manifest: FileSnapshotManifest;
}

export interface FindOptions {
  /** Search only these snapshots (`latest`, ids or prefixes); default: every file snapshot of the job. */
  snapshots?: readonly string[];
}

/**
 * `cairn ls`, `find` and `diff`: read the trees of file snapshots. The repository is opened
 * read-only under a shared lock (so a prune cannot sweep a tree while it is read); every tree
 * blob is verified against its id on the way. `latest` means the job's newest file snapshot.
 */
@injectable()
export class BrowseOperation {
  constructor(
    @inject(Repositories) private readonly repositories: Repositories,
    @inject(PipelineWorkers) private readonly workers: PipelineWorkers,
    @inject(RepositoryLocks) private readonly locks: RepositoryLocks,
    @inject(Logger) private readonly logger: Logger,
  ) {}

  /** The folder (or the one entry) at `path` of a snapshot. */
  ls(job: LoadedJob, ref: string, path: string, options: ListOptions = {}): Promise<{ snapshot: FileSnapshotRef; listing: Listing }> {
    return this.#withTrees(job, 'ls', async (repository, openReader) => {
      const snapshot = await this.#resolve(repository, job, ref, 'cairn ls');
      const listing = await listPath(await openReader(), snapshot.id, snapshot.manifest, path, options);
      if (listing.folderError !== undefined) this.logger.warn(`${displayName(listing.path)} could not be read when it was backed up (${listing.folderError}): what it held is missing or incomplete`);
      return { snapshot, listing };
    });
  }

  /** The versions of the paths the matcher matches, across the job's file snapshots (or the chosen ones), oldest first. */
  find(job: LoadedJob, matcher: PathMatcher, options: FindOptions = {}): Promise<{ snapshots: FileSnapshotRef[]; versions: FoundVersion[] }> {
    return this.#withTrees(job, 'find', async (repository, openReader) => {
      const snapshots = options.snapshots?.length ? await this.#resolveAll(repository, job, options.snapshots) : await this.#jobSnapshots(repository, job);
      const versions = snapshots.length > 0 ? await findVersions(await openReader(), snapshots, matcher) : [];
      return { snapshots, versions };
    });
  }

  /** What changed from snapshot `a` to snapshot `b`. */
  diff(job: LoadedJob, a: string, b: string): Promise<{ older: FileSnapshotRef; newer: FileSnapshotRef; diff: SnapshotDiff }> {
    return this.#withTrees(job, 'diff', async (repository, openReader) => {
      const older = await this.#resolve(repository, job, a, 'cairn diff');
      const newer = await this.#resolve(repository, job, b, 'cairn diff');
      return { older, newer, diff: await diffTrees(await openReader(), older.manifest.tree, newer.manifest.tree) };
    });
  }

  /**
   * Runs `fn` with the repository under a shared lock; `openReader` loads the index and starts
   * the workers that open tree blobs, once the snapshots are resolved (a bad id fails fast).
   */
  #withTrees<T>(job: LoadedJob, operation: string, fn: (repository: Repository, openReader: () => Promise<TreeReader>) => Promise<T>): Promise<T> {
    return this.workers.withPool((pool) =>
      this.repositories.withRepository(job, (repository) =>
        this.locks.withLock(repository, operation, 'shared', () => {
          let reader: Promise<TreeReader> | undefined;
          const openReader = () =>
            (reader ??= this.workers.prepare(pool, repository, job, 'read').then((index) => {
              for (const damaged of index.unreadable) this.logger.warn(`${damaged.message}; reading from the other index files (\`cairn repair index\` rebuilds the index)`);
              return new TreeReader(repository, index, pool);
            }));
          return fn(repository, openReader);
        }),
      ),
    );
  }

  async #resolve(repository: Repository, job: LoadedJob, ref: string, what: string): Promise<FileSnapshotRef> {
    if (ref === 'latest') {
      const latest = (await this.#jobSnapshots(repository, job)).at(-1);
      if (!latest) throw new SnapshotNotFoundError(`The job "${job.info.name}" has no file snapshots in ${repository.location} yet`);
      return latest;
    }
    const damaged: DamagedObject[] = [];
    const found = await repository.resolveSnapshot(ref, damaged);
    return { id: found.id, manifest: requireFileManifest(found.id, found.manifest, what) };
  }

  async #resolveAll(repository: Repository, job: LoadedJob, refs: readonly string[]): Promise<FileSnapshotRef[]> {
    const resolved = new Map<string, FileSnapshotRef>();
    for (const ref of refs) {
      const snapshot = await this.#resolve(repository, job, ref, 'cairn find');
      resolved.set(snapshot.id, snapshot);
    }
    return [...resolved.values()].sort((x, y) => x.manifest.time.localeCompare(y.manifest.time) || x.id.localeCompare(y.id));
  }

  /** The job's file snapshots, oldest first; damaged ones are named in a warning and left out. */
  async #jobSnapshots(repository: Repository, job: LoadedJob): Promise<FileSnapshotRef[]> {
    const damaged: DamagedObject[] = [];
    const all = await repository.listSnapshots(damaged);
    for (const object of damaged) this.logger.warn(`${object.message}; it is left out (\`cairn check\` reports it)`);
    const refs: FileSnapshotRef[] = [];
    for (const { id, manifest } of all) if (manifest.job === job.info.name && isFileManifest(manifest)) refs.push({ id, manifest });
    return refs;
  }
}
