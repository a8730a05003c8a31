import { inject, injectable } from '../vendor.js';
import { SnapshotNotFoundError, UsageError } from '../errors.js';
import { Logger } from '../services.js';
import { Repositories } from '../repository/repositories.js';
import type { Repository, SnapshotSummary } from '../repository/repository.js';
import { RepositoryLocks } from '../repository/lock.js';
import { isFileManifest, type AnySnapshotManifest } from '../repository/snapshot.js';
import type { DamagedObject } from '../repository/blob-index.js';
import type { LoadedJob } from '../job/job-loader.js';
import { localTimeZone } from '../retention/calendar.js';
import { applyRetention, groupSnapshots, isEmptyPolicy, type GroupField, type GroupKey, type RetentionPolicy } from '../retention/policy.js';

export interface ForgetOptions {
  /** The policy of the command line; without it, the job's `retention`. */
  policy?: RetentionPolicy;
  /** Zone of the calendar rules; default: the job's `retention.timeZone`, else the local zone. */
  timeZone?: string;
  /** Default: host and job. */
  groupBy?: GroupField[];
  /** Decide and report, remove nothing. */
  dryRun?: boolean;
  /** Apply the policy to every snapshot in the repository, not only to this job's. */
  allJobs?: boolean;
  /** Forget exactly these snapshots (ids, prefixes of 4+ hex digits, or latest) instead of applying a policy. */
  snapshots?: string[];
}

export interface ForgetEntry {
  id: string;
  time: string;
  host: string;
  job: string;
  tags: string[];
  /** Set for a snapshot whose manifest cannot be read (damaged); `time`, `host` and `job` are then empty. */
  unreadable?: true;
}

export interface ForgetGroup {
  key: GroupKey;
  /** Newest first, each with every rule that keeps it. */
  keep: Array<ForgetEntry & { reasons: string[] }>;
  /** Newest first. */
  remove: ForgetEntry[];
}

export interface ForgetResult {
  /** The policy applied; absent when snapshots were named. */
  policy?: RetentionPolicy;
  timeZone: string;
  groups: ForgetGroup[];
  /** Ids of the snapshots removed (none in a dry run). */
  removed: string[];
  /** Snapshots whose manifests cannot be read (`cairn check` names the damage): no policy touches them; only naming them removes them. */
  unreadable: string[];
  dryRun: boolean;
}

export const DEFAULT_GROUP_BY: readonly GroupField[] = ['host', 'job'];

/**
 * `cairn forget`: applies a retention policy to the job's snapshots, per group, and removes
 * the snapshot files it does not keep; or removes the snapshots named. It only ever removes
 * snapshots it decided to remove, so a failure halfway leaves every kept one untouched, and
 * it never deletes data: packs no snapshot needs any more stay until `prune`. It takes a
 * shared lock: removing a snapshot file cannot break a backup or restore running beside it.
 */
@injectable()
export class ForgetOperation {
  constructor(
    @inject(Repositories) private readonly repositories: Repositories,
    @inject(RepositoryLocks) private readonly locks: RepositoryLocks,
    @inject(Logger) private readonly logger: Logger,
  ) {}

  /** Throws UsageError, before any I/O, when there is nothing to apply: forget never removes everything by default. */
  async run(job: LoadedJob, options: ForgetOptions = {}): Promise<ForgetResult> {
    const named = options.snapshots ?? [];
    if (named.length > 0 && options.policy && !isEmptyPolicy(options.policy)) throw new UsageError('Name snapshots to forget, or give --keep-* rules, not both');
    const policy = named.length > 0 ? undefined : (options.policy ?? retentionPolicyOf(job));
    if (named.length === 0 && (!policy || isEmptyPolicy(policy))) {
      throw new UsageError(
        `No retention policy: give --keep-last, --keep-daily, … --keep-within or --keep-tag, or a "retention" in ${job.info.file}, or name the snapshots to forget. Without one, forget removes nothing.`,
      );
    }
    const timeZone = options.timeZone ?? job.config.retention?.timeZone ?? localTimeZone();
    const dryRun = options.dryRun ?? false;
    return this.repositories.withRepository(job, async (repository) => {
      const decide = async () => {
        const damaged: DamagedObject[] = [];
        const snapshots = await repository.listSnapshots(damaged);
        const unreadable = damaged.map((d) => d.object.slice(d.object.lastIndexOf('/') + 1)).sort();
        if (policy && unreadable.length > 0) {
          this.logger.warn(`${unreadable.length} snapshot(s) cannot be read and are left as they are (cairn check names the damage; forget <job> <id> removes one): ${unreadable.map((id) => id.slice(0, 12)).join(', ')}`);
        }
        const groups = policy ? this.#applyPolicy(job, snapshots, policy, timeZone, options) : [namedGroup(repository, snapshots, unreadable, named)];
        const removed = dryRun ? [] : await this.#remove(repository, groups.flatMap((g) => g.remove));
        return { ...(policy && { policy }), timeZone, groups, removed, unreadable, dryRun };
      };
      // A dry run writes nothing to the repository, not even a lock.
      return dryRun ? decide() : this.locks.withLock(repository, 'forget', false, decide);
    });
  }

  #applyPolicy(job: LoadedJob, all: SnapshotSummary[], policy: RetentionPolicy, timeZone: string, options: ForgetOptions): ForgetGroup[] {
    const snapshots = options.allJobs ? all : all.filter((s) => s.manifest.job === job.info.name);
    const groups = groupSnapshots(snapshots, options.groupBy ?? DEFAULT_GROUP_BY, (s) => ({ host: s.manifest.hostname, job: s.manifest.job, paths: backedUpPaths(s.manifest), tags: s.manifest.tags }));
    return groups.map(({ key, snapshots: members }) => {
      const candidates = members.map((s) => ({ ...entryOf(s), time: s.manifest.time }));
      const { keep, remove } = applyRetention(candidates, policy, { timeZone });
      return { key, keep: keep.map(({ snapshot, reasons }) => ({ ...snapshot, reasons })), remove };
    });
  }

  /** Removes the snapshot files one by one, oldest first; says how far it got when one fails. */
  async #remove(repository: Repository, entries: ForgetEntry[]): Promise<string[]> {
    const removed: string[] = [];
    const order = [...entries].sort((a, b) => (Date.parse(a.time) || 0) - (Date.parse(b.time) || 0) || a.id.localeCompare(b.id));
    for (const entry of order) {
      try {
        await repository.removeSealed('snapshots', entry.id);
      } catch (err) {
        this.logger.warn(`forget removed ${removed.length} of ${order.length} snapshots, then failed on ${entry.id.slice(0, 12)}; every snapshot it keeps is untouched. Run it again to finish.`);
        throw err;
      }
      removed.push(entry.id);
      this.logger.debug(`removed snapshot ${entry.id}`);
    }
    return removed;
  }
}

/** What a snapshot backed up, for `--group-by paths`: a file snapshot's paths, a volume snapshot's source. */
function backedUpPaths(manifest: AnySnapshotManifest): string[] {
  return isFileManifest(manifest) ? manifest.paths : [manifest.source.path];
}

function retentionPolicyOf(job: LoadedJob): RetentionPolicy | undefined {
  const retention = job.config.retention;
  if (!retention) return undefined;
  const { timeZone: _zone, ...policy } = retention;
  return policy;
}

function entryOf(s: SnapshotSummary): ForgetEntry {
  return { id: s.id, time: s.manifest.time, host: s.manifest.hostname, job: s.manifest.job, tags: s.manifest.tags ?? [] };
}

/**
 * The snapshots named on the command line, as one group to remove; each name must match
 * exactly one. A damaged snapshot can be named by its id (that is how one gets rid of it).
 */
function namedGroup(repository: Repository, snapshots: SnapshotSummary[], unreadable: string[], refs: string[]): ForgetGroup {
  const entries = [...snapshots.map(entryOf), ...unreadable.map((id): ForgetEntry => ({ id, time: '', host: '', job: '', tags: [], unreadable: true }))];
  const chosen = new Map<string, ForgetEntry>();
  for (const ref of refs) {
    const entry = resolveRef(repository, entries, snapshots, ref);
    chosen.set(entry.id, entry);
  }
  // Newest first; unreadable ones, which have no time, last.
  const remove = [...chosen.values()].sort((a, b) => (Date.parse(b.time) || 0) - (Date.parse(a.time) || 0) || b.id.localeCompare(a.id));
  return { key: {}, keep: [], remove };
}

/** `latest` (the newest readable snapshot), a full id or an unambiguous prefix of 4+ hex digits, as `Repository.resolveSnapshot` reads them. */
function resolveRef(repository: Repository, entries: ForgetEntry[], readable: SnapshotSummary[], ref: string): ForgetEntry {
  if (ref === 'latest') {
    const latest = readable.at(-1);
    if (!latest) throw new SnapshotNotFoundError(`The repository at ${repository.location} has no ${entries.length > 0 ? 'readable ' : ''}snapshots yet`);
    return entryOf(latest);
  }
  if (!/^[0-9a-f]{4,64}$/.test(ref)) throw new SnapshotNotFoundError(`"${ref}" is not a snapshot id (use latest, or 4 to 64 hex digits)`);
  const matches = entries.filter((s) => s.id.startsWith(ref));
  if (matches.length === 0) throw new SnapshotNotFoundError(`No snapshot ${ref} in ${repository.location}`);
  if (matches.length > 1) throw new SnapshotNotFoundError(`Snapshot id ${ref} is ambiguous: ${matches.map((m) => m.id.slice(0, 12)).join(', ')}`);
  return matches[0]!;
}
