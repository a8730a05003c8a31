import { readFileSync } from 'node:fs';

/**
 * When process `pid` started (clock ticks since boot, field 22 of /proc/<pid>/stat): with the
 * pid it names one process, also after the pid is reused by another. Undefined when there is no
 * such process, or only a zombie.
 */
export function processStartTime(pid: number): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[0] === 'Z' ? undefined : fields[19];
}
