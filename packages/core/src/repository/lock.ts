import { hostname } from 'node:os';
import { inject, injectable } from '../vendor.js';
import { RepositoryLockedError } from '../errors.js';
import type { IDisposable } from '../lifecycle.js';
import { Clock } from '../services.js';
import type { Repository } from './repository.js';

interface LockInfo {
  exclusive: boolean;
  operation: string;
  hostname: string;
  pid: number;
  time: string;
}

/** A lock not refreshed for this long belongs to a process that died on another machine. */
const STALE_AFTER_MS = 30 * 60 * 1000;
const REFRESH_EVERY_MS = 5 * 60 * 1000;

/**
 * Shared locks (backup, restore, check) coexist; an exclusive lock (prune, key removal)
 * excludes everything. A lock whose process is gone (same host, pid not running) or that
 * was not refreshed for 30 minutes by the clock is stale and ignored.
 */
@injectable()
export class RepositoryLocks {
  constructor(@inject(Clock) private readonly clock: Clock) {}

  /** Takes a lock for `operation`; RepositoryLockedError when a live lock excludes it. Dispose to release. */
  async acquire(repository: Repository, operation: string, exclusive: boolean): Promise<IDisposable> {
    const lock = new HeldLock(repository, { exclusive, operation, hostname: hostname(), pid: process.pid, time: '' }, this.clock);
    await lock.write();
    // Checked after writing, so that two processes that race both see each other.
    const blocker = await this.#findBlocker(repository, lock);
    if (blocker) {
      await lock.dispose();
      throw new RepositoryLockedError(
        `The repository is locked ${blocker.exclusive ? 'exclusively ' : ''}by ${blocker.operation} (pid ${blocker.pid} on ${blocker.hostname}, since ${blocker.time}); try again when it has finished`,
      );
    }
    lock.keepFresh();
    return lock;
  }

  /** Runs `fn` while holding a lock. */
  async withLock<T>(repository: Repository, operation: string, exclusive: boolean, fn: () => Promise<T>): Promise<T> {
    const lock = await this.acquire(repository, operation, exclusive);
    try {
      return await fn();
    } finally {
      await lock.dispose();
    }
  }

  async #findBlocker(repository: Repository, own: HeldLock): Promise<LockInfo | undefined> {
    for (const id of await repository.listIds('locks')) {
      if (id === own.id) continue;
      let info: LockInfo;
      try {
        info = JSON.parse((await repository.getSealed('locks', id)).toString('utf8'));
      } catch {
        continue; // Removed meanwhile, or unreadable: it cannot be honoured, so it blocks no one.
      }
      if (isStale(info, this.clock.now())) continue;
      if (own.info.exclusive || info.exclusive) return info;
    }
    return undefined;
  }
}

/** This process's lock object: rewritten every few minutes so others see it is alive. */
class HeldLock implements IDisposable {
  id = '';
  #timer: NodeJS.Timeout | undefined;
  #refreshing: Promise<void> | undefined;

  constructor(
    private readonly repository: Repository,
    readonly info: LockInfo,
    private readonly clock: Clock,
  ) {}

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
    clearInterval(this.#timer);
    // A refresh in flight would otherwise write a new lock object after this one is removed.
    await this.#refreshing;
    await this.repository.removeSealed('locks', this.id).catch(() => undefined);
  }
}

function isStale(info: LockInfo, now: Date): boolean {
  if (now.getTime() - Date.parse(info.time) > STALE_AFTER_MS) return true;
  if (info.hostname !== hostname()) return false;
  try {
    process.kill(info.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
