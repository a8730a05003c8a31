import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CAIRN_BIN, cliEnv, parseJson, runCli, type CliOptions, type CliResult } from './cli.js';
import { runCommand } from './exec.js';
import { PASSWORD_ENV } from './job.js';
import type { FileSnapshotManifest } from '@cairn/core';

export interface FilesJobOptions {
  name?: string;
  /** The files and folders to back up (absolute, or relative to the job file). */
  paths: string[];
  exclude?: string[];
  /** The repository folder; default `repo` next to the job file. */
  repository?: string;
  compression?: Record<string, unknown>;
  /** More settings of the `files` source (excludeCaches, oneFileSystem, …). */
  source?: Record<string, unknown>;
  /** Replaces whole top-level properties of the job. */
  extra?: Record<string, unknown>;
}

/** Writes a job file with a `files` source into `dir` and returns its path. */
export async function writeFilesJob(dir: string, options: FilesJobOptions, fileName = 'job.json'): Promise<string> {
  const job: Record<string, unknown> = {
    name: options.name ?? 'files-e2e',
    source: { type: 'files', paths: options.paths, ...(options.exclude && { exclude: options.exclude }), ...options.source },
    compression: options.compression ?? { type: 'zstd', level: 3 },
    target: { type: 'local', path: options.repository ?? './repo' },
    password: { env: 'CAIRN_PASSWORD' },
    ...options.extra,
  };
  const path = join(dir, fileName);
  await writeFile(path, JSON.stringify(job, null, 2) + '\n');
  return path;
}

/** The stats a file snapshot records, as `backup --json` prints them. */
export type FileBackupStats = FileSnapshotManifest['stats'];

/** What `cairn backup --json` prints for a files job. */
export interface FileBackupSummary {
  snapshot: string;
  kind: 'files';
  time: string;
  tags: string[];
  paths: string[];
  parent?: string;
  bytesRead: number;
  bytesAdded: number;
  stats: FileBackupStats;
  skipped: Array<{ path: string; reason: string }>;
  skippedCount: number;
}

/** `cairn backup <job> --json` of a files job; the exit code is the caller's to check (0, or 3 when incomplete). */
export async function backupFilesRun(job: string, args: string[] = [], options: CliOptions = {}): Promise<{ result: CliResult; summary: FileBackupSummary }> {
  const result = await runCli(['backup', job, '--json', ...args], { ...options, env: { ...PASSWORD_ENV, ...options.env } });
  return { result, summary: parseJson<FileBackupSummary>(result) };
}

/** `cairn backup <job> --json` of a files job that must save a complete snapshot. */
export async function backupFiles(job: string, args: string[] = [], options: CliOptions = {}): Promise<FileBackupSummary> {
  const { result, summary } = await backupFilesRun(job, args, options);
  if (result.exitCode !== 0) throw new Error(`cairn backup exited ${result.exitCode}:\n${result.stdout}\n${result.stderr}`);
  return summary;
}

/** The user `nobody` (65534:65534): what a non-root backup runs as in the tests. */
export const NOBODY = { uid: 65534, gid: 65534 };

/** Runs `cairn ...args` as another user (setpriv, no supplementary groups), with the test password. */
export async function runCliAs(user: { uid: number; gid: number }, args: string[], options: { cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  const setpriv = [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', process.execPath, CAIRN_BIN, ...args];
  const result = await runCommand('setpriv', setpriv, { env: cliEnv(PASSWORD_ENV), cwd: options.cwd ?? '/', timeoutMs: options.timeoutMs ?? 100_000 });
  return result;
}

export interface ManyFilesOptions {
  /** Files in all. */
  files: number;
  /** Files per folder (folders are numbered, two levels deep). */
  perFolder?: number;
  /** Bytes of each file (different content in each): default 100 to 2,000. */
  size?: (i: number) => number;
}

/** A tree of many small files with distinct content under `root`; returns their paths, relative to it. */
export async function writeManyFiles(root: string, options: ManyFilesOptions): Promise<string[]> {
  const perFolder = options.perFolder ?? 100;
  const size = options.size ?? ((i: number) => 100 + ((i * 7919) % 1900));
  const paths: string[] = [];
  for (let i = 0; i < options.files; i++) {
    const folder = Math.floor(i / perFolder);
    paths.push(join(`d${Math.floor(folder / 10)}`, `f${folder}`, `file-${i}.txt`));
  }
  const folders = new Set(paths.map((p) => join(p, '..')));
  for (const folder of folders) await mkdir(join(root, folder), { recursive: true });
  // Writes in parallel batches: 100,000 files take a few seconds this way.
  const BATCH = 256;
  for (let at = 0; at < paths.length; at += BATCH) {
    await Promise.all(paths.slice(at, at + BATCH).map((p, j) => writeFile(join(root, p), fileText(at + j, size(at + j)))));
  }
  return paths;
}

/** `length` bytes of text unique to file `i`. */
export function fileText(i: number, length: number): Buffer {
  const line = `file ${i}: the quick brown fox jumps over the lazy dog ${i * 2654435761}\n`;
  return Buffer.from(line.repeat(Math.ceil(length / line.length)).slice(0, length));
}

export { pseudoRandomBytes } from '@cairn/core/testing';
