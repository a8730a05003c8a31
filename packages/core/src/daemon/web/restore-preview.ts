import { lstat, readFile, realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, posix } from 'node:path';
import type { Logger } from '../../services.js';
import type { JobCommand } from './dashboard.js';
import { cairnJson } from './cairn-queries.js';
import { HttpError } from './http-error.js';

export interface RestorePreview {
  to: string;
  kind: 'file' | 'device' | 'folder' | 'new';
  exists: boolean;
  size?: number;
  mounted?: boolean;
  /** Files that exist and would be replaced (up to OVERWRITES_SHOWN), or `[to]` for an image or device. */
  overwrites: string[];
  needsDeviceConfirmation: boolean;
}

const OVERWRITES_SHOWN = 100;

/** What a restore of `snapshot` to `to` would overwrite, for the dashboard's restore wizard. */
export async function previewRestore(command: JobCommand, request: { snapshot: string; to: string; include?: string[] }, logger: Logger): Promise<RestorePreview> {
  if (!isAbsolute(request.to)) throw new HttpError(400, 'CAIRN_USAGE', `"to" must be an absolute path, not "${request.to}"`);
  const destination = await describeDestination(request.to);
  const snapshot = await cairnJson(command, ['show', command.job.info.file, request.snapshot], logger);
  const isFiles = snapshot.kind === 'files';
  let overwrites: string[] = [];
  if (isFiles && destination.kind === 'folder') overwrites = await existingFiles(command, snapshot.id, request.to, request.include ?? [], logger);
  else if (!isFiles && destination.exists) overwrites = [request.to];
  return { to: request.to, ...destination, overwrites, needsDeviceConfirmation: destination.kind === 'device' };
}

async function describeDestination(to: string): Promise<Pick<RestorePreview, 'kind' | 'exists' | 'size' | 'mounted'>> {
  const info = await stat(to).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new HttpError(400, 'CAIRN_RESTORE_DESTINATION', `Cannot use ${to}: ${err.message}`);
  });
  if (!info) return { kind: 'new', exists: false };
  if (info.isDirectory()) return { kind: 'folder', exists: true };
  if (info.isBlockDevice()) return { kind: 'device', exists: true, size: await blockDeviceSize(info.rdev), mounted: await isMounted(to) };
  return { kind: 'file', exists: true, size: info.size };
}

/** The snapshot's files (under the include paths) that exist below `to`, where the restore writes them. */
async function existingFiles(command: JobCommand, snapshot: string, to: string, include: string[], logger: Logger): Promise<string[]> {
  const entries: Array<{ path: string; type: string }> = await cairnJson(command, ['ls', command.job.info.file, snapshot, '/', '--recursive'], logger);
  const found: string[] = [];
  for (const entry of entries) {
    if (entry.type === 'dir' || entry.type === 'directory' || !included(entry.path, include)) continue;
    const target = join(to, entry.path);
    if (await lstat(target).then(() => true, () => false)) found.push(target);
    if (found.length >= OVERWRITES_SHOWN) break;
  }
  return found;
}

/** An include path takes itself and everything below it (patterns with wildcards are not matched here). */
function included(path: string, include: string[]): boolean {
  if (include.length === 0) return true;
  return include.some((pattern) => {
    const prefix = posix.join('/', pattern).replace(/\/+$/, '');
    return prefix === '' || path === prefix || path.startsWith(prefix + '/');
  });
}

async function blockDeviceSize(rdev: number): Promise<number | undefined> {
  const major = Number((BigInt(rdev) >> 8n) & 0xfffn) | Number((BigInt(rdev) >> 32n) & ~0xfffn);
  const minor = Number(BigInt(rdev) & 0xffn) | Number((BigInt(rdev) >> 12n) & ~0xffn);
  const sectors = await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8').catch(() => undefined);
  return sectors === undefined ? undefined : Number(sectors.trim()) * 512;
}

/** Whether the device, or a partition of it, is mounted (from /proc/self/mounts). */
async function isMounted(device: string): Promise<boolean> {
  const real = await realpath(device).catch(() => device);
  const mounts = await readFile('/proc/self/mounts', 'utf8').catch(() => '');
  for (const line of mounts.split('\n')) {
    const source = line.split(' ')[0];
    if (!source?.startsWith('/dev/')) continue;
    const sourceReal = await realpath(source).catch(() => source);
    if (sourceReal === real || new RegExp(`^${escapeRegExp(real)}p?\\d+$`).test(sourceReal)) return true;
  }
  return false;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
