import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MountError } from '../errors.js';
import type { ProcessIdentity } from './processes.js';
import type { NbdServer } from './nbd-server-process.js';

/*
 * What `cairn mount` set up under a folder, written to `<dir>/.cairn/mount.json` after every
 * step, so that `cairn umount` (or a failed mount) undoes exactly that, in reverse, by pid and
 * device: never anything found by name.
 */

export const STATE_DIR_NAME = '.cairn';
const STATE_FILE_NAME = 'mount.json';
const STATE_VERSION = 1;

/** How a filesystem is mounted: by the kernel, or by a FUSE program cairn started. */
export type MountDriver = 'kernel' | 'fusefat' | 'ntfs-3g';

export interface PartitionMount {
  /** 1, 2, … as in /dev/sda1; 0 for a bare filesystem. */
  partition: number;
  /** `<dir>/p<N>`. */
  path: string;
  /** The loop device over the partition's bytes. */
  device: string;
  filesystem?: string;
  driver?: MountDriver;
  /** Set once the filesystem is mounted at `path`. */
  mounted: boolean;
  /** The FUSE program serving the filesystem (fusefat, ntfs-3g). */
  process?: ProcessIdentity;
}

export interface MountState {
  version: number;
  snapshot: string;
  /** The mount folder, as a real path. */
  dir: string;
  server?: NbdServer;
  /** The nbdfuse file holding the whole disk, and the nbdfuse process. */
  image?: { path: string; process: ProcessIdentity };
  partitions: PartitionMount[];
}

export function stateDirOf(dir: string): string {
  return join(dir, STATE_DIR_NAME);
}

export function newMountState(dir: string, snapshot: string): MountState {
  return { version: STATE_VERSION, snapshot, dir, partitions: [] };
}

/** Replaces the state file at once (a reader never sees half of it). */
export async function saveMountState(state: MountState): Promise<void> {
  const file = join(stateDirOf(state.dir), STATE_FILE_NAME);
  await writeFile(`${file}.tmp`, JSON.stringify(state, null, 2) + '\n');
  await rename(`${file}.tmp`, file);
}

/** The state `cairn mount` left in `dir`; a MountError when there is none: cairn did not mount it. */
export async function loadMountState(dir: string): Promise<MountState> {
  const file = join(stateDirOf(dir), STATE_FILE_NAME);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new MountError(`${dir} was not mounted by cairn mount (it has no ${STATE_DIR_NAME}/${STATE_FILE_NAME}); nothing done`);
    throw new MountError(`Cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  const state = parseState(text, file);
  if (state.dir !== dir) throw new MountError(`${file} describes a mount at ${state.dir}, not at ${dir}; nothing done`);
  return state;
}

function parseState(text: string, file: string): MountState {
  let state: MountState;
  try {
    state = JSON.parse(text);
  } catch (err) {
    throw new MountError(`${file} is not a cairn mount record (not JSON); nothing done`, { cause: err });
  }
  if (state?.version !== STATE_VERSION || !Array.isArray(state.partitions) || typeof state.dir !== 'string') {
    throw new MountError(`${file} is not a mount record this cairn understands (version ${state?.version}); nothing done`);
  }
  return state;
}
