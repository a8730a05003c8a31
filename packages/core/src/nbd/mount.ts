import { mkdir, readdir, readFile, realpath, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ExternalToolError, MountError, UsageError, InterruptedError } from '../errors.js';
import type { VolumeLayout } from '../source.js';
import { parseMountInfo } from '../system/mountinfo.js';
import { listLoopDevices } from '../system/loop-devices.js';
import { isRunning, runTool, runToolOk, spawnDetached, stopProcess, waitForExit, waitUntilReady } from './processes.js';
import { startNbdServer, stopNbdServer, type NbdServerRequest } from './nbd-server-process.js';
import { loadMountState, newMountState, saveMountState, stateDirOf, type MountDriver, type MountState, type PartitionMount } from './mount-state.js';

/*
 * `cairn mount`: a snapshot's filesystems, read-only, under `<dir>/p<N>`. The machine has no
 * `nbd` kernel module, so the whole disk's NBD export becomes a file through libnbd's nbdfuse,
 * each partition a read-only loop device over its bytes of that file, and each filesystem is
 * mounted from its loop device: by the kernel (ext2/3/4, XFS, Btrfs, FAT where the kernel has
 * vfat), or by a FUSE program (fusefat, ntfs-3g). Everything started is recorded in
 * `<dir>/.cairn/mount.json` and outlives the command, until `cairn umount <dir>`.
 */

/** One filesystem to mount: a partition of the layout, or the bare filesystem (index 0). */
export interface VolumePart {
  index: number;
  offset: number;
  size: number;
  filesystem?: string;
}

export interface MountRequest {
  /** The mount folder (created if missing; must be empty). */
  dir: string;
  snapshot: string;
  layout: VolumeLayout;
  /** Mount only this partition. */
  partition?: number;
  server: Omit<NbdServerRequest, 'socket' | 'stateDir'>;
  /** SIGTERM/SIGINT: what is done so far is undone (the server is detached and would stay) and an InterruptedError thrown. */
  interrupt?: AbortSignal;
}

export interface MountedFilesystem {
  partition: number;
  path: string;
  filesystem: string;
  driver: MountDriver;
  device: string;
}

export interface SkippedFilesystem {
  partition: number;
  filesystem?: string;
  reason: string;
}

export interface MountResult {
  snapshot: string;
  dir: string;
  socket: string;
  mounted: MountedFilesystem[];
  skipped: SkippedFilesystem[];
}

/** The parts of a layout `cairn mount` mounts: its partitions, or the volume itself as p0. */
export function volumeParts(layout: VolumeLayout, only?: number): VolumePart[] {
  const parts: VolumePart[] =
    layout.partitionTable.type === 'none'
      ? [{ index: 0, offset: 0, size: layout.size, ...(layout.filesystem && { filesystem: layout.filesystem }) }]
      : layout.partitions.map((p) => ({ index: p.index, offset: p.offset, size: p.size, ...(p.filesystem && { filesystem: p.filesystem }) }));
  if (only === undefined) return parts;
  const chosen = parts.filter((p) => p.index === only);
  if (chosen.length === 0) throw new UsageError(`The snapshot has no partition ${only}; it has ${parts.map((p) => p.index).join(', ') || 'none'}`);
  return chosen;
}

/** Mounts the snapshot's filesystems under `request.dir`; on failure undoes what it did. */
export async function mountSnapshot(request: MountRequest): Promise<MountResult> {
  const parts = volumeParts(request.layout, request.partition);
  const dir = await prepareMountDir(request.dir);
  const state = newMountState(dir, request.snapshot);
  await mkdir(stateDirOf(dir));
  await saveMountState(state);
  const skipped: SkippedFilesystem[] = [];
  const stopIfInterrupted = () => {
    if (request.interrupt?.aborted) throw new InterruptedError(String(request.interrupt.reason));
  };
  try {
    await startServer(state, request);
    stopIfInterrupted();
    await attachDiskFile(state);
    for (const part of parts) {
      stopIfInterrupted();
      const skip = await mountPart(state, part);
      if (skip) skipped.push(skip);
    }
    stopIfInterrupted();
  } catch (err) {
    await undoMount(state).catch((undoErr) => {
      throw new MountError(`${(err as Error).message}; undoing the mount failed too (${(undoErr as Error).message}): run cairn umount ${dir}`, { cause: err });
    });
    throw err;
  }
  return { snapshot: request.snapshot, dir, socket: state.server!.socket, mounted: mountedOf(state), skipped };
}

function mountedOf(state: MountState): MountedFilesystem[] {
  return state.partitions.map((p) => ({ partition: p.partition, path: p.path, filesystem: p.filesystem!, driver: p.driver!, device: p.device }));
}

/** Creates the folder if needed; refuses one that is not empty (a mount would hide its files) or already mounted. */
async function prepareMountDir(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const real = await realpath(dir);
  const entries = await readdir(real);
  if (entries.includes('.cairn')) throw new MountError(`${real} already has a snapshot mounted (or a mount left half done): run cairn umount ${real} first`);
  if (entries.length > 0) throw new MountError(`${real} is not empty; cairn mount needs an empty folder`);
  return real;
}

/** A Unix socket path must fit in sockaddr_un (108 bytes with its final NUL). */
const MAX_SOCKET_PATH = 107;

async function startServer(state: MountState, request: MountRequest): Promise<void> {
  const stateDir = stateDirOf(state.dir);
  const socket = join(stateDir, 'nbd.sock');
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) throw new UsageError(`The mount folder's path is too long for a Unix socket (${socket}); use a shorter one`);
  state.server = await startNbdServer({ ...request.server, socket, stateDir });
  await saveMountState(state);
}

/** The whole disk's export as the file `<dir>/.cairn/disk.raw`, through nbdfuse (read-only). */
async function attachDiskFile(state: MountState): Promise<void> {
  const stateDir = stateDirOf(state.dir);
  const path = join(stateDir, 'disk.raw');
  const pidFile = join(stateDir, 'nbdfuse.pid');
  const logFile = join(stateDir, 'nbdfuse.log');
  await writeFile(path, ''); // nbdfuse mounts over an existing file
  const nbdfuse = await spawnDetached('nbdfuse', ['--readonly', '--pidfile', pidFile, path, '--unix', state.server!.socket], { logFile });
  state.image = { path, process: nbdfuse.identity };
  await saveMountState(state);
  await waitUntilReady('nbdfuse', nbdfuse, logFile, async () => ((await readFile(pidFile, 'utf8').catch(() => '')) && (await isMountPoint(path)) ? true : undefined));
}

/** Mounts one partition at `<dir>/p<N>`, or says why it is skipped. */
async function mountPart(state: MountState, part: VolumePart): Promise<SkippedFilesystem | undefined> {
  const args = ['--read-only', '--find', '--show', '--offset', String(part.offset), '--sizelimit', String(part.size), state.image!.path];
  const device = (await runToolOk('losetup', args)).trim();
  const entry: PartitionMount = { partition: part.index, path: join(state.dir, `p${part.index}`), device, mounted: false };
  state.partitions.push(entry);
  await saveMountState(state);
  const filesystem = (await detectFilesystem(device)) ?? part.filesystem;
  const plan = mountPlan(filesystem);
  if ('skip' in plan) {
    await undoPartition(state, entry);
    return { partition: part.index, ...(filesystem && { filesystem }), reason: plan.skip };
  }
  entry.filesystem = filesystem!;
  await mkdir(entry.path);
  await mountFilesystem(state, entry, plan);
  entry.mounted = true;
  await saveMountState(state);
  return undefined;
}

/** The filesystem type blkid finds on `device` (`ext4`, `vfat`, `ntfs`, `swap`, …), if any. */
async function detectFilesystem(device: string): Promise<string | undefined> {
  const result = await runTool('blkid', ['-p', '-o', 'value', '-s', 'TYPE', device]);
  const type = result.stdout.trim();
  return result.exitCode === 0 && type ? type : undefined;
}

type MountPlan = { driver: 'kernel'; type: string; options: string } | { driver: 'fat' } | { driver: 'ntfs-3g' } | { skip: string };

/**
 * How each filesystem is mounted read-only without writing to it: ext3/4 without replaying a
 * dirty journal (`noload`), XFS without log recovery, Btrfs without log replay; the loop
 * device is read-only as well.
 */
export function mountPlan(filesystem: string | undefined): MountPlan {
  switch (filesystem) {
    case 'ext3':
    case 'ext4':
      return { driver: 'kernel', type: filesystem, options: 'ro,noload' };
    case 'ext2':
      return { driver: 'kernel', type: 'ext2', options: 'ro' };
    case 'xfs':
      return { driver: 'kernel', type: 'xfs', options: 'ro,norecovery' };
    case 'btrfs':
      return { driver: 'kernel', type: 'btrfs', options: 'ro,rescue=nologreplay' };
    case 'vfat':
    case 'fat12':
    case 'fat16':
    case 'fat32':
      return { driver: 'fat' };
    case 'ntfs':
      return { driver: 'ntfs-3g' };
    case undefined:
      return { skip: 'no filesystem found' };
    case 'swap':
      return { skip: 'swap space holds no files' };
    case 'luks':
    case 'crypto_LUKS':
      return { skip: 'encrypted (LUKS): open the partition with cryptsetup to read it' };
    case 'lvm2':
      return { skip: 'an LVM2 physical volume: its logical volumes are not mounted by cairn yet' };
    default:
      return { skip: `cairn does not mount ${filesystem} filesystems` };
  }
}

async function mountFilesystem(state: MountState, entry: PartitionMount, plan: Exclude<MountPlan, { skip: string }>): Promise<void> {
  if (plan.driver === 'kernel') return kernelMount(entry, plan.type, plan.options);
  if (plan.driver === 'ntfs-3g') return fuseMount(state, entry, 'ntfs-3g', ['-o', 'ro,no_detach', entry.device, entry.path]);
  // FAT: the kernel's vfat where it has one, else Debian's fusefat.
  const kernel = await runTool('mount', ['-t', 'vfat', '-o', 'ro', entry.device, entry.path]);
  if (kernel.exitCode === 0) {
    entry.driver = 'kernel';
    return;
  }
  return fuseMount(state, entry, 'fusefat', ['-f', '-o', 'ro', entry.device, entry.path]);
}

async function kernelMount(entry: PartitionMount, type: string, options: string): Promise<void> {
  const result = await runTool('mount', ['-t', type, '-o', options, entry.device, entry.path]);
  if (result.exitCode !== 0) throw new MountError(`Cannot mount partition ${entry.partition} (${type}) at ${entry.path}: ${result.stderr.trim()}`);
  entry.driver = 'kernel';
}

/** Starts a FUSE file system program in the foreground (so its pid is the one that serves) and waits for its mount. */
async function fuseMount(state: MountState, entry: PartitionMount, program: 'fusefat' | 'ntfs-3g', args: string[]): Promise<void> {
  // fusefat writes a line to stdout for every cluster it reads: its output is discarded.
  const logFile = program === 'fusefat' ? undefined : join(stateDirOf(state.dir), `p${entry.partition}.log`);
  const fuse = await spawnDetached(program, args, { ...(logFile && { logFile }) });
  entry.process = fuse.identity;
  entry.driver = program;
  await saveMountState(state);
  await waitUntilReady(`${program} for partition ${entry.partition}`, fuse, logFile, async () => ((await isMountPoint(entry.path)) ? true : undefined));
}

async function isMountPoint(path: string): Promise<boolean> {
  const mounts = parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'));
  return mounts.some((m) => m.mountPoint === path);
}

/** Undoes what `cairn mount` did in `dir`, as its state file records it. */
export async function unmountSnapshot(dir: string): Promise<MountState> {
  const real = await realpath(dir).catch(() => {
    throw new MountError(`${dir} does not exist`);
  });
  const state = await loadMountState(real);
  await undoMount(state);
  return state;
}

/** In reverse: each filesystem and its loop device, the disk file, the server; then the state folder. */
async function undoMount(state: MountState): Promise<void> {
  for (const entry of [...state.partitions].reverse()) await undoPartition(state, entry);
  if (state.image) {
    await unmountPath(state.image.path, 'the disk file');
    if (!(await waitForExit(state.image.process, 10_000))) await stopProcess(state.image.process);
    state.image = undefined;
    await saveMountState(state);
  }
  if (state.server) {
    await stopNbdServer(state.server);
    state.server = undefined;
    await saveMountState(state);
  }
  await rm(stateDirOf(state.dir), { recursive: true, force: true });
}

async function undoPartition(state: MountState, entry: PartitionMount): Promise<void> {
  if (await isMountPoint(entry.path)) await unmountPath(entry.path, `partition ${entry.partition}`);
  if (entry.process && !(await waitForExit(entry.process, 10_000))) await stopProcess(entry.process);
  await detachLoop(entry.device, state.image!.path);
  await rmdir(entry.path).catch(() => undefined);
  state.partitions = state.partitions.filter((p) => p !== entry);
  await saveMountState(state);
}

async function unmountPath(path: string, what: string): Promise<void> {
  if (!(await isMountPoint(path))) return;
  const result = await runTool('umount', [path]);
  if (result.exitCode === 0) return;
  if (/busy/.test(result.stderr)) throw new MountError(`${what} at ${path} is in use (a process has a file open there, or its working folder is inside: see fuser -vm ${path}); nothing more undone`);
  throw new MountError(`Cannot unmount ${what} at ${path}: ${result.stderr.trim()}`);
}

/** Detaches the loop device, only while it still maps our disk file: never another user's device. */
async function detachLoop(device: string, backingFile: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const loop = (await listLoopDevices()).find((l) => l.devicePath === device);
    if (!loop || loop.backingFile !== backingFile) return;
    const result = await runTool('losetup', ['--detach', device]);
    if (result.exitCode === 0) return;
    // Right after an unmount the kernel may hold the device for a moment.
    if (attempt >= 20) throw new ExternalToolError(`losetup --detach ${device} failed: ${result.stderr.trim()}`);
    await sleep(100);
  }
}
