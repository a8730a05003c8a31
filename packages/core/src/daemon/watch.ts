import { watch, statSync, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';

/** Changes within this long of each other cause one reload (editors write a file in several steps). */
const SETTLE_MS = 300;

/**
 * Watches the job files and folders named on the command line and calls `changed` once things
 * settle. It watches folders, not files: editors save by writing a new file and renaming it
 * over the old one, which a watch on the old file would miss.
 */
export function watchJobFiles(paths: readonly string[], cwd: string, changed: () => void): FSWatcher[] {
  let timer: NodeJS.Timeout | undefined;
  const settle = () => {
    clearTimeout(timer);
    timer = setTimeout(changed, SETTLE_MS);
  };
  const watchers: FSWatcher[] = [];
  for (const path of paths.map((p) => resolve(cwd, p))) {
    const folder = isFolder(path);
    const watcher = watch(folder ? path : dirname(path), { persistent: false }, (_event, name) => {
      if (folder ? String(name ?? '').endsWith('.json') : name === null || String(name) === basename(path)) settle();
    });
    // A watched folder that disappears ends its watch; SIGHUP still reloads.
    watcher.on('error', () => watcher.close());
    watchers.push(watcher);
  }
  return watchers;
}

function isFolder(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
