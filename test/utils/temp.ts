import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './exec.js';
import { useScope, type Scope } from './scope.js';

/** A fresh temporary folder removed when `scope` is disposed. */
export async function tempDir(scope: Scope, prefix = 'cairn-e2e-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  scope.defer(`remove ${dir}`, async () => {
    // Never recurse into a filesystem still mounted below the folder (a test that failed
    // before its own unmount step): unmount it first.
    for (const mountPoint of await mountPointsUnder(dir)) await run('umount', [mountPoint]);
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

/** A fresh temporary folder removed when the current test finishes. Call inside a test. */
export function useTempDir(prefix?: string): Promise<string> {
  return tempDir(useScope(), prefix);
}

/** Mount points at or below `dir`, deepest first. */
export async function mountPointsUnder(dir: string): Promise<string[]> {
  const mounts = await readFile('/proc/self/mounts', 'utf8');
  return mounts
    .split('\n')
    .map((line) => line.split(' ')[1])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))))
    .filter((p) => p === dir || p.startsWith(dir + '/'))
    .sort((a, b) => b.length - a.length);
}
