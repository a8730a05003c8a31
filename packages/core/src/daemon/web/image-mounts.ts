import type { BigIntStats } from 'node:fs';
import { lstat, mkdir, readdir, readlink, realpath } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Logger } from '../../services.js';
import { modeString, type EntryJson } from '../../cli/format-entries.js';
import type { EntryType } from '../../files/tree.js';
import { startCairn } from '../cairn-process.js';
import { cairnJson } from './cairn-queries.js';
import type { JobCommand } from './dashboard.js';
import { HttpError } from './http-error.js';

/** An image snapshot stays mounted this long after the last listing of it. */
const IDLE_MS = 10 * 60_000;
/** Where `cairn mount` keeps its own state inside the mount folder: not a file of the snapshot. */
const MOUNT_STATE = '.cairn';

interface Mounted {
  dir: string;
  command: JobCommand;
  ready: Promise<void>;
  lastUsed: number;
}

/**
 * The files of image snapshots for the dashboard: a snapshot is mounted read-only with `cairn
 * mount` (its filesystems under p1, p2, …) the first time it is browsed, listed from there, and
 * unmounted with `cairn umount` after IDLE_MS without a listing, or when the dashboard stops.
 */
export class ImageMounts {
  readonly #mounts = new Map<string, Mounted>();
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly root: string,
    private readonly logger: Logger,
  ) {
    this.#timer = setInterval(() => void this.#unmountIdle(), 60_000);
    this.#timer.unref();
  }

  /** The entries of `path` (`/`, `/p1`, `/p1/etc`, …) in the snapshot, as `cairn ls --json` gives them for file snapshots. */
  async list(command: JobCommand, snapshot: string, path: string): Promise<EntryJson[]> {
    const dir = await this.#mounted(command, snapshot);
    const names = posix.normalize(path).split('/').filter((n) => n !== '' && n !== '.');
    if (names.includes('..') || names[0] === MOUNT_STATE) throw new HttpError(400, 'CAIRN_USAGE', `path must name a place in the snapshot, not "${path}"`);
    const absolute = join(dir, ...names);
    // A symbolic link inside a mounted filesystem must not lead out of the snapshot.
    const [real, root] = await Promise.all([realpath(absolute).catch(() => absolute), realpath(dir)]);
    if (real !== root && !real.startsWith(`${root}/`)) throw new HttpError(400, 'CAIRN_USAGE', `${path} leads out of the snapshot`);
    const stats = await lstat(absolute).catch(() => {
      throw new HttpError(404, 'CAIRN_PATH_NOT_FOUND', `Snapshot ${snapshot.slice(0, 8)} has no ${path}`);
    });
    const prefix = `/${names.join('/')}`;
    if (!stats.isDirectory()) return [await entryOf(absolute, prefix)];
    const children = (await readdir(absolute)).filter((name) => names.length > 0 || name !== MOUNT_STATE).sort();
    return Promise.all(children.map((name) => entryOf(join(absolute, name), posix.join(prefix, name))));
  }

  /**
   * Unmounts what an earlier daemon left mounted under the root: one killed (SIGKILL, a crash)
   * could not unmount its snapshots when it stopped.
   */
  async removeLeftovers(): Promise<void> {
    const names = await readdir(this.root).catch(() => [] as string[]);
    for (const name of names) {
      const dir = join(this.root, name);
      if (!(await lstat(join(dir, MOUNT_STATE, 'mount.json')).catch(() => undefined))) continue;
      const outcome = await startCairn(['umount', dir, '--json'], { env: process.env, cwd: this.root, logger: this.logger }).done;
      if (outcome.exitCode === 0) this.logger.info(`unmounted ${dir}, left mounted by an earlier daemon`);
      else this.logger.warn(`could not unmount ${dir}, left mounted by an earlier daemon (\`cairn umount ${dir}\`): ${outcome.error?.message ?? `exit code ${outcome.exitCode}`}`);
    }
  }

  /** Unmounts everything this dashboard mounted. */
  async dispose(): Promise<void> {
    clearInterval(this.#timer);
    await Promise.all([...this.#mounts.keys()].map((key) => this.#unmount(key)));
  }

  async #mounted(command: JobCommand, snapshot: string): Promise<string> {
    const key = `${command.job.info.name}/${snapshot}`;
    let mounted = this.#mounts.get(key);
    if (!mounted) {
      const dir = join(this.root, `${safeName(command.job.info.name)}-${snapshot.slice(0, 16)}`);
      const ready = mkdir(this.root, { recursive: true }).then(() => cairnJson(command, ['mount', command.job.info.file, snapshot, dir], this.logger)).then(() => undefined);
      mounted = { dir, command, ready, lastUsed: Date.now() };
      this.#mounts.set(key, mounted);
      ready.catch(() => this.#mounts.delete(key));
      this.logger.info(`mounting snapshot ${snapshot.slice(0, 12)} of ${command.job.info.name} at ${dir} for the dashboard`);
    }
    await mounted.ready;
    mounted.lastUsed = Date.now();
    return mounted.dir;
  }

  async #unmountIdle(): Promise<void> {
    const now = Date.now();
    for (const [key, mounted] of this.#mounts) if (now - mounted.lastUsed > IDLE_MS) await this.#unmount(key);
  }

  async #unmount(key: string): Promise<void> {
    const mounted = this.#mounts.get(key);
    if (!mounted) return;
    this.#mounts.delete(key);
    try {
      await mounted.ready;
      await cairnJson(mounted.command, ['umount', mounted.dir], this.logger);
    } catch (err) {
      this.logger.warn(`could not unmount ${mounted.dir} (\`cairn umount ${mounted.dir}\`): ${(err as Error).message}`);
    }
  }
}

function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, '_');
}

const TYPES: Array<[keyof BigIntStats, EntryType]> = [
  ['isFile', 'file'],
  ['isDirectory', 'dir'],
  ['isSymbolicLink', 'symlink'],
  ['isCharacterDevice', 'chardev'],
  ['isBlockDevice', 'blockdev'],
  ['isFIFO', 'fifo'],
];

/** An entry of a mounted filesystem in the shape of `cairn ls --json`. */
async function entryOf(absolute: string, path: string): Promise<EntryJson> {
  const stats = await lstat(absolute, { bigint: true });
  const type = TYPES.find(([test]) => (stats[test] as () => boolean)())?.[1] ?? 'file';
  const mode = Number(stats.mode & 0o7777n);
  const iso = (ns: bigint) => new Date(Number(ns / 1_000_000n)).toISOString();
  return {
    path,
    name: posix.basename(path),
    type,
    mode,
    permissions: modeString(type, mode),
    uid: Number(stats.uid),
    gid: Number(stats.gid),
    size: Number(stats.size),
    mtime: iso(stats.mtimeNs),
    ctime: iso(stats.ctimeNs),
    atime: iso(stats.atimeNs),
    links: Number(stats.nlink),
    inode: stats.ino.toString(),
    ...(type === 'symlink' && { target: await readlink(absolute) }),
  } as EntryJson;
}
