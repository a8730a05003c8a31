import { hostname } from 'node:os';
import { DamageError } from '../errors.js';
import { Keys } from './format.js';
import type { DamagedObject } from './blob-index.js';
import type { Repository } from './repository.js';

/**
 * Prune's first phase: packs it will delete once no operation that started before the mark
 * can still need them (docs/FORMAT.md, Prune). Writers ignore marked packs (they store such
 * blobs anew), readers use a marked pack only for blobs no other pack holds.
 */
export interface PruneMark {
  version: 1;
  /** When the mark was written; operations whose lock started before it (plus clock skew) are waited for. */
  time: string;
  hostname: string;
  pid: number;
  packs: string[];
}

export interface StoredMark {
  id: string;
  mark: PruneMark;
}

export async function writeMark(repository: Repository, packs: readonly string[], time: Date): Promise<StoredMark> {
  const mark: PruneMark = { version: 1, time: time.toISOString(), hostname: hostname(), pid: process.pid, packs: [...packs].sort() };
  const { id } = await repository.putSealed('marks', Buffer.from(JSON.stringify(mark)));
  return { id, mark };
}

/**
 * Every readable mark, oldest first. A damaged one goes to `damaged`: since prune deletes
 * only what a mark it can read names, a damaged mark protects nothing and deletes nothing.
 */
export async function loadMarks(repository: Repository, damaged: DamagedObject[] = []): Promise<StoredMark[]> {
  const marks: StoredMark[] = [];
  for (const id of await repository.listIds('marks')) {
    try {
      marks.push({ id, mark: decodeMark(id, await repository.getSealed('marks', id)) });
    } catch (err) {
      if (repository.isNotFound(err)) continue; // a prune finished with it meanwhile
      if (!(err instanceof DamageError)) throw err;
      damaged.push({ object: Keys.mark(id), message: err.message });
    }
  }
  return marks.sort((a, b) => a.mark.time.localeCompare(b.mark.time));
}

function decodeMark(id: string, plain: Buffer): PruneMark {
  let mark: PruneMark;
  try {
    mark = JSON.parse(plain.toString('utf8'));
  } catch (err) {
    throw new DamageError(`${Keys.mark(id)} is damaged: it is not valid JSON`, { cause: err });
  }
  if (mark?.version !== 1 || !Array.isArray(mark.packs) || Number.isNaN(Date.parse(mark.time))) {
    throw new DamageError(`${Keys.mark(id)} is not a prune mark this cairn understands`);
  }
  return mark;
}
