import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { processStartTime } from '../system/process-start.js';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { DaemonStateError, describeSystemError } from '../errors.js';
import { tempName } from '../temp-names.js';
import { STATE_FILE, type DaemonState } from './state.js';

/**
 * Reading and writing `<state dir>/state.json`. The daemon replaces the file atomically, so
 * `cairn status` and the metrics can read it at any moment, also while the daemon runs.
 */

/** The daemon's state kept in `dir`; undefined when there is no state file (no daemon has run there). */
export async function readDaemonState(dir: string): Promise<DaemonState | undefined> {
  const path = join(dir, STATE_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new DaemonStateError(`Cannot read the daemon's state file ${path}: ${describeSystemError(err)}`, { cause: err });
  }
  return parseDaemonState(text, path);
}

/** The state in a state file's text; `path` names the file in errors. */
export function parseDaemonState(text: string, path: string): DaemonState {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new DaemonStateError(`The daemon's state file ${path} is not valid JSON (${(err as Error).message}); remove it to start afresh`, { cause: err });
  }
  const problem = stateShapeProblem(value);
  if (problem) throw new DaemonStateError(`The daemon's state file ${path} ${problem}`);
  return value as DaemonState;
}

/** What keeps `value` from being a state this cairn can read (only what the readers rely on), or undefined. */
function stateShapeProblem(value: unknown): string | undefined {
  if (!isObject(value)) return 'does not hold a JSON object';
  if (typeof value.version === 'number' && value.version > 1) {
    return `has version ${value.version}: it was written by a newer cairn (this one reads version 1)`;
  }
  if (value.version !== 1) return 'has no version 1: it is not a cairn daemon state';
  const daemon = value.daemon;
  if (!isObject(daemon) || typeof daemon.pid !== 'number' || typeof daemon.hostname !== 'string' || typeof daemon.started !== 'string') {
    return 'lacks the daemon\'s pid, hostname or start time';
  }
  if (!isObject(value.jobs) || !Object.values(value.jobs).every((job) => isObject(job) && isObject(job.tasks))) return 'lacks its jobs';
  if (!Array.isArray(value.problems)) return 'lacks its list of problems';
  return undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Replaces the state file in `dir` atomically; creates `dir` (mode 0700: the state names job files and repositories) when missing. */
export async function writeDaemonState(dir: string, state: DaemonState): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFileAtomically(join(dir, STATE_FILE), JSON.stringify(state, null, 2) + '\n', 0o600);
}

/**
 * Writes `path` so that a reader sees the old content or the new, never a part: a temporary
 * file in the same folder (same filesystem, so the rename is atomic), fsynced, renamed over
 * `path`, and the folder fsynced so the rename survives a crash. `mode` is set explicitly, since
 * the process's umask (the service's UMask=0077) would otherwise narrow it.
 */
export async function writeFileAtomically(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  // The temp name starts with a dot and has no extension: no reader of `*.json` or `*.prom` picks it up.
  const temp = join(dirname(path), `${tempName()}-${basename(path).replace(/\./g, '_')}`);
  try {
    const file = await open(temp, 'wx', mode);
    try {
      await file.writeFile(data);
      await file.chmod(mode);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  await syncFolder(dirname(path));
}

async function syncFolder(dir: string): Promise<void> {
  const folder = await open(dir, 'r');
  try {
    await folder.sync();
  } finally {
    await folder.close();
  }
}

/**
 * Whether the daemon that wrote `state` still runs: it did not stop cleanly, it ran on this host,
 * and its pid is alive. A daemon of another host (a state folder on a shared disk) cannot be
 * checked from here and counts as not running.
 */
export function daemonIsRunning(state: DaemonState, thisHost = hostname()): boolean {
  if (state.daemon.stopped) return false;
  if (state.daemon.hostname !== thisHost) return false;
  // A pid of a daemon that died long ago may belong to another process now.
  if (state.daemon.startTime !== undefined) return processStartTime(state.daemon.pid) === state.daemon.startTime;
  return processIsAlive(state.daemon.pid);
}

function processIsAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to another user (a root daemon seen by a user's `cairn status`).
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
