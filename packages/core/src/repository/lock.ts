import { hostname } from 'node:os';
import { RepositoryLockedError } from '../errors.js';
import type { IDisposable } from '../lifecycle.js';
import { Keys } from './format.js';
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
 * was not refreshed for 30 minutes is stale and ignored.
 */
export async function acquireLock(repository: Repository, operation: string, exclusive: boolean, now: () => Date = () => new Date()): Promise<IDisposable> {
  const own = { id: '' };
  const write = async () => {
    const info: LockInfo = { exclusive, operation, hostname: hostname(), pid: process.pid, time: now().toISOString() };
    const previous = own.id;
    own.id = (await repository.putSealed('locks', Buffer.from(JSON.stringify(info)))).id;
    if (previous) await repository.target.remove(Keys.lock(previous)).catch(() => undefined);
  };
  await write();
  // Check after writing, so two processes that race both see each other.
  for (const id of await repository.listIds('locks/')) {
    if (id === own.id) continue;
    let info: LockInfo;
    try {
      info = JSON.parse((await repository.getSealed(Keys.lock(id))).toString('utf8'));
    } catch {
      continue; // Removed meanwhile, or unreadable: it cannot be honoured, so it blocks no one.
    }
    if (isStale(info, now())) continue;
    if (exclusive || info.exclusive) {
      await repository.target.remove(Keys.lock(own.id)).catch(() => undefined);
      throw new RepositoryLockedError(
        `The repository is locked ${info.exclusive ? 'exclusively ' : ''}by ${info.operation} (pid ${info.pid} on ${info.hostname}, since ${info.time}); try again when it has finished`,
      );
    }
  }
  const timer = setInterval(() => void write().catch(() => undefined), REFRESH_EVERY_MS);
  timer.unref();
  return {
    async dispose() {
      clearInterval(timer);
      await repository.target.remove(Keys.lock(own.id)).catch(() => undefined);
    },
  };
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
