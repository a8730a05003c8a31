import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WORKSPACE_PLUGINS, runCli, expectSuccess, parseJson, type CliOptions, type CliResult } from './cli.js';

export const PASSWORD = 'correct horse battery staple';
export const PASSWORD_ENV = { CAIRN_PASSWORD: PASSWORD };

export interface JobOptions {
  name?: string;
  /** The volume to back up (absolute, or relative to the job file). */
  source: string;
  /** The repository folder; default `repo` next to the job file. */
  repository?: string;
  compression?: Record<string, unknown>;
  password?: Record<string, unknown>;
  chunkSize?: number;
  /** Replaces whole top-level properties of the job. */
  extra?: Record<string, unknown>;
}

/** Writes a job file into `dir` and returns its path. */
export async function writeJob(dir: string, options: JobOptions, fileName = 'job.json'): Promise<string> {
  const job: Record<string, unknown> = {
    name: options.name ?? 'e2e',
    source: { type: 'volume', path: options.source, mode: 'exact' },
    compression: options.compression ?? { type: 'zstd', level: 3 },
    target: { type: 'local', path: options.repository ?? './repo' },
    password: options.password ?? { env: 'CAIRN_PASSWORD' },
    ...(options.chunkSize !== undefined ? { chunkSize: options.chunkSize } : {}),
    ...options.extra,
  };
  const path = join(dir, fileName);
  await writeFile(path, JSON.stringify(job, null, 2) + '\n');
  return path;
}

export interface BackupSummary {
  snapshot: string;
  time: string;
  size: number;
  bytesRead: number;
  bytesAdded: number;
  chunks: { data: number; new: number; zero: number; unused: number };
  durationMs: number;
  imageDigest: ImageDigestJson;
}

/** The digest of a snapshot's whole image, as `--json` prints it. */
export interface ImageDigestJson {
  algorithm: 'sha256' | 'blake3' | 'blake3-chunks';
  hex: string;
}

export interface SnapshotRow {
  id: string;
  time: string;
  size: number;
  imageDigest: ImageDigestJson;
  source: { type: string; path: string };
  [key: string]: unknown;
}

/** What `prune --json` prints: the operation's result, as JSON. */
export type { PruneResult as PruneSummary } from '@cairn/core';

/** `cairn <command> <job> ...` that must succeed. */
export async function cairnOk(command: string, job: string, args: string[] = [], options: CliOptions = {}): Promise<CliResult> {
  const result = await runCli([command, job, ...args], { ...options, env: { ...PASSWORD_ENV, ...options.env } });
  expectSuccess(result);
  return result;
}

export async function init(job: string, options: CliOptions = {}): Promise<void> {
  await cairnOk('init', job, [], options);
}

export async function backup(job: string, options: CliOptions = {}): Promise<BackupSummary> {
  return parseJson<BackupSummary>(await cairnOk('backup', job, ['--json'], options));
}

export async function snapshots(job: string, options: CliOptions = {}): Promise<SnapshotRow[]> {
  return parseJson<SnapshotRow[]>(await cairnOk('snapshots', job, ['--json'], options));
}

export async function restore(job: string, snapshot: string, to: string, options: CliOptions & { force?: boolean } = {}): Promise<CliResult> {
  return cairnOk('restore', job, [snapshot, '--to', to, ...(options.force ? ['--force'] : [])], options);
}

/** Pack files of a repository, as `data/xx/<id>` paths relative to it. */
export async function listPacks(repository: string): Promise<string[]> {
  const packs: string[] = [];
  let folders: string[];
  try {
    folders = await readdir(join(repository, 'data'));
  } catch {
    return [];
  }
  for (const folder of folders.sort()) {
    for (const name of (await readdir(join(repository, 'data', folder))).sort()) {
      if (/^[0-9a-f]{64}$/.test(name)) packs.push(`data/${folder}/${name}`);
    }
  }
  return packs;
}

/** Total size of every file in a folder tree (a repository: what it takes on its target). */
export async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

/** Flips the lowest bit of the byte at `offset` (negative: from the end) of a file. */
export async function flipByte(path: string, offset: number): Promise<void> {
  const data = await readFile(path);
  const at = offset < 0 ? data.length + offset : offset;
  data[at]! ^= 0x01;
  await writeFile(path, data);
}

export async function readRepositoryConfig(repository: string): Promise<Record<string, any>> {
  return JSON.parse(await readFile(join(repository, 'config'), 'utf8'));
}

/** Writes a plugins.json listing the workspace plugins by absolute path, then `extra` entries. */
export async function writePluginsFile(dir: string, extra: string[] = [], fileName = 'plugins.json'): Promise<string> {
  const path = join(dir, fileName);
  await writeFile(path, JSON.stringify({ plugins: [...WORKSPACE_PLUGINS, ...extra] }, null, 2) + '\n');
  return path;
}
