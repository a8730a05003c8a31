import { hostname } from 'node:os';
import { inject, injectable } from '../vendor.js';
import { DamageError, RepositoryLockedError } from '../errors.js';
import type { IDisposable } from '../lifecycle.js';
import { Clock } from '../services.js';
import type { Repository } from './repository.js';

/**
 * - `shared`: backup, restore, check, forget. Any number coexist.
 * - `maintenance`: prune. Coexists with shared locks (prune's two phases keep running
 *   backups safe, see docs/FORMAT.md), excludes another maintenance or exclusive lock.
 * - `exclusive`: repair. Excludes every other lock.
 */
export type LockMode = 'shared' | 'maintenance' | 'exclusive';

export interface LockInfo {
  /** Kept for readers of format versions before 4, which know only shared and exclusive. */
  exclusive: boolean;
  mode?: LockMode;
  operation: string;
  hostname: string;
  pid: number;
  /** When the lock was last written (refreshed). */
  time: string;
  /** When the operation took the lock (absent in locks of older cairns: then `time`). */
  started?: string;
}

export interface ListedLock {
  id: string;
  info: LockInfo;
  /** Why the lock no longer counts, or undefined while it holds. */
  stale: string | undefined;
}

/** A lock not refreshed for this long belongs to a process that died on another machine. */
export const STALE_AFTER_MS = 30 * 60 * 1000;
const REFRESH_EVERY_MS = 5 * 60 * 1000;

/**
 * Repository locks. A lock whose process is gone (same host, pid not running) or that was
 * not refreshed for 30 minutes by the clock is stale and ignored; stale locks of dead
 * processes on this host are removed by the next lock taken here.
 */
@injectable()
export class RepositoryLocks {
  constructor(@inject(Clock) private readonly clock: Clock) {}

  /** Takes a lock for `operation`; RepositoryLockedError when a live lock excludes it. Dispose to release. */
  async acquire(repository: Repository, operation: string, mode: LockMode | boolean): Promise<HeldLock> {
    const own = lockMode(mode);
    const now = this.clock.now().toISOString();
    const lock = new HeldLock(repository, { exclusive: own === 'exclusive', mode: own, operation, hostname: hostname(), pid: process.pid, time: now, started: now }, this.clock);
    await lock.write();
    // Checked after writing, so that two processes that race both see each other.
    const blocker = await this.#findBlocker(repository, lock).catch(async (err: unknown) => {
      await lock.dispose();
      throw err;
    });
    if (blocker) {
      await lock.dispose();
      throw new RepositoryLockedError(describeBlocker(blocker));
    }
    lock.keepFresh();
    heldLocks.add(lock);
    return lock;
  }

  /** Runs `fn` while holding a lock. */
  async withLock<T>(repository: Repository, operation: string, mode: LockMode | boolean, fn: () => Promise<T>): Promise<T> {
    const lock = await this.acquire(repository, operation, mode);
    try {
      return await fn();
    } finally {
      await lock.dispose();
    }
  }

  /** Every lock object, each with why it is stale (or undefined while it holds). Unreadable ones are stale. */
  async list(repository: Repository): Promise<ListedLock[]> {
    const locks: ListedLock[] = [];
    for (const id of await repository.listIds('locks')) {
      const info = await readLock(repository, id);
      if (info === 'gone') continue;
      if (info === 'unreadable') locks.push({ id, info: UNREADABLE, stale: 'it cannot be read (damaged)' });
      else locks.push({ id, info, stale: staleness(info, this.clock.now()) });
    }
    return locks;
  }

  /** Removes stale locks, or every lock with `all`; returns the removed ones. */
  async remove(repository: Repository, options: { all: boolean; except?: string }): Promise<ListedLock[]> {
    const removed: ListedLock[] = [];
    for (const lock of await this.list(repository)) {
      if (lock.id === options.except || (!options.all && !lock.stale)) continue;
      await repository.removeSealed('locks', lock.id);
      removed.push(lock);
    }
    return removed;
  }

  async #findBlocker(repository: Repository, own: HeldLock): Promise<LockInfo | undefined> {
    for (const lock of await this.list(repository)) {
      if (lock.id === own.id) continue;
      if (lock.stale) {
        // Its process is gone for sure: clearing it saves the next reader the question.
        if (processIsGone(lock.info)) await repository.removeSealed('locks', lock.id);
        continue;
      }
      if (conflicts(own.mode, modeOf(lock.info))) return lock.info;
    }
    return undefined;
  }
}

/** The locks this process holds, so that an interrupted command can release them before it exits. */
const heldLocks = new Set<HeldLock>();

/**
 * Removes every lock this process holds (SIGTERM or SIGINT: the process exits next). What the
 * interrupted operation stored stays consistent without them: packs not yet indexed are adopted
 * by the next backup, a snapshot not yet written never appears.
 */
export async function releaseHeldLocks(): Promise<void> {
  await Promise.allSettled([...heldLocks].map((lock) => lock.dispose()));
}

/** This process's lock object: rewritten every few minutes so others see it is alive. */
export class HeldLock implements IDisposable {
  id = '';
  #timer: NodeJS.Timeout | undefined;
  #refreshing: Promise<void> | undefined;

  constructor(
    private readonly repository: Repository,
    readonly info: LockInfo,
    private readonly clock: Clock,
  ) {}

  get mode(): LockMode {
    return modeOf(this.info);
  }

  async write(): Promise<void> {
    const previous = this.id;
    const info = { ...this.info, time: this.clock.now().toISOString() };
    this.id = (await this.repository.putSealed('locks', Buffer.from(JSON.stringify(info)))).id;
    if (previous) await this.repository.removeSealed('locks', previous).catch(() => undefined);
  }

  keepFresh(): void {
    this.#timer = setInterval(() => {
      this.#refreshing ??= this.write()
        .catch(() => undefined)
        .finally(() => (this.#refreshing = undefined));
    }, REFRESH_EVERY_MS);
    this.#timer.unref();
  }

  async dispose(): Promise<void> {
    heldLocks.delete(this);
    clearInterval(this.#timer);
    // A refresh in flight would otherwise write a new lock object after this one is removed.
    await this.#refreshing;
    await this.repository.removeSealed('locks', this.id).catch(() => undefined);
  }
}

const UNREADABLE: LockInfo = { exclusive: false, operation: 'unknown', hostname: 'unknown', pid: 0, time: new Date(0).toISOString() };

async function readLock(repository: Repository, id: string): Promise<LockInfo | 'gone' | 'unreadable'> {
  try {
    return JSON.parse((await repository.getSealed('locks', id)).toString('utf8'));
  } catch (err) {
    if (repository.isNotFound(err)) return 'gone';
    if (err instanceof DamageError) return 'unreadable';
    throw err;
  }
}

function lockMode(mode: LockMode | boolean): LockMode {
  if (mode === true) return 'exclusive';
  if (mode === false) return 'shared';
  return mode;
}

export function modeOf(info: LockInfo): LockMode {
  return info.mode ?? (info.exclusive ? 'exclusive' : 'shared');
}

function conflicts(a: LockMode, b: LockMode): boolean {
  if (a === 'exclusive' || b === 'exclusive') return true;
  return a === 'maintenance' && b === 'maintenance';
}

/** Why a lock no longer counts, or undefined while it holds. */
export function staleness(info: LockInfo, now: Date): string | undefined {
  const age = now.getTime() - Date.parse(info.time);
  if (!(age <= STALE_AFTER_MS)) return `it was not refreshed for ${Math.round(age / 60_000)} minutes`;
  return processIsGone(info) ? `its process ${info.pid} no longer runs` : undefined;
}

/** Whether the lock's process ran on this host and runs no more. */
function processIsGone(info: LockInfo): boolean {
  if (info.hostname !== hostname()) return false;
  try {
    process.kill(info.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function describeBlocker(info: LockInfo): string {
  const mode = modeOf(info);
  const expires = new Date(Date.parse(info.time) + STALE_AFTER_MS).toISOString();
  const local = info.hostname === hostname();
  return (
    `The repository is locked ${mode === 'shared' ? '' : `${mode === 'exclusive' ? 'exclusively' : 'for maintenance'} `}by ${info.operation} ` +
    `(pid ${info.pid} on ${info.hostname}, since ${info.started ?? info.time}, last refreshed ${info.time}); try again when it has finished. ` +
    (local
      ? `Its process is running on this host.`
      : `If that process is gone, the lock expires at ${expires} (30 minutes without a refresh); \`cairn unlock <job>\` removes it then, \`cairn unlock <job> --remove-all\` at once.`)
  );
}
