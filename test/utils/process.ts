import { readFile } from 'node:fs/promises';

/** A process counts as gone when /proc has no entry for it or it is a zombie (ended, not yet collected). */
export async function isAlive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  return stat !== undefined && stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
}
