import { lstat, readFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError, describeSystemError, type SourceSettings } from '@cairn/core';
import { ExcludeMatcher, patternLines } from './patterns.js';

/** The job file's `source` object, as `schema/files.schema.json` describes it. */
export interface FilesSourceSettings extends SourceSettings {
  type: 'files';
  paths: string[];
  exclude?: string[];
  excludeFile?: string | string[];
  excludeCaches?: boolean;
  excludeLargerThan?: string | number;
  oneFileSystem?: boolean;
}

/** A backed-up path, as opened. */
export interface Root {
  path: Buffer;
  /** `st_dev` of the root: with oneFileSystem, folders on another device are kept empty. */
  device: bigint;
}

/** What the walk needs from the settings, checked and resolved. */
export interface WalkOptions {
  roots: Root[];
  excludes: ExcludeMatcher;
  excludeCaches: boolean;
  /** Regular files larger than this many bytes are left out. */
  excludeLargerThan: number;
  oneFileSystem: boolean;
}

/** Absolute, normalised paths without duplicates; a path inside another is dropped (with a warning). */
export function normaliseRoots(paths: readonly string[], baseDir: string): { roots: string[]; warnings: string[] } {
  const resolved = [...new Set(paths.map((p) => path.resolve(baseDir, p)))].sort();
  const roots: string[] = [];
  const warnings: string[] = [];
  for (const candidate of resolved) {
    const outer = roots.find((root) => candidate === root || candidate.startsWith(root === '/' ? '/' : `${root}/`));
    if (outer === undefined) roots.push(candidate);
    else warnings.push(`${candidate} is inside ${outer}, which is backed up whole: it is listed once`);
  }
  return { roots, warnings };
}

/** `1048576`, `512K`, `100M`, `1.5G`, `2TiB`: binary units, as restic's --exclude-larger-than. */
export function parseSize(value: string | number): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  const match = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(String(value).trim());
  if (!match) throw new UsageError(`source.excludeLargerThan must be a size such as 100M, 2G or 1048576 (bytes), not ${JSON.stringify(value)}`);
  return Math.floor(Number(match[1]) * 1024 ** ' KMGT'.indexOf((match[2] || ' ').toUpperCase()));
}

async function readExcludeFiles(files: readonly string[], baseDir: string): Promise<string[]> {
  const patterns: string[] = [];
  for (const file of files) {
    const absolute = path.resolve(baseDir, file);
    try {
      patterns.push(...patternLines(await readFile(absolute, 'utf8')));
    } catch (err) {
      throw new UsageError(`source.excludeFile ${absolute} cannot be read: ${describeSystemError(err)}`, { cause: err });
    }
  }
  return patterns;
}

function compileExcludes(patterns: readonly string[]): ExcludeMatcher {
  try {
    return new ExcludeMatcher(patterns);
  } catch (err) {
    throw new UsageError(`source.exclude: ${(err as Error).message}`, { cause: err });
  }
}

async function openRoot(root: string): Promise<Root> {
  try {
    const stats = await lstat(root, { bigint: true });
    return { path: Buffer.from(root), device: stats.dev };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' || code === 'ENOTDIR' ? 'does not exist' : `cannot be read: ${describeSystemError(err)}`;
    throw new UsageError(`source.paths: ${root} ${why}`, { cause: err });
  }
}

/** Checks and resolves the settings: relative paths against the job file's folder, the exclude files read. */
export async function resolveSettings(settings: SourceSettings, baseDir: string): Promise<{ options: WalkOptions; warnings: string[] }> {
  const s = settings as FilesSourceSettings;
  if (!Array.isArray(s.paths) || s.paths.length === 0 || s.paths.some((p) => typeof p !== 'string' || p === '')) {
    throw new UsageError('A files source needs "paths": a non-empty list of files and folders to back up');
  }
  const { roots, warnings } = normaliseRoots(s.paths, baseDir);
  const excludeFiles = s.excludeFile === undefined ? [] : Array.isArray(s.excludeFile) ? s.excludeFile : [s.excludeFile];
  const patterns = [...(s.exclude ?? []), ...(await readExcludeFiles(excludeFiles, baseDir))];
  const options: WalkOptions = {
    roots: await Promise.all(roots.map(openRoot)),
    excludes: compileExcludes(patterns),
    excludeCaches: s.excludeCaches === true,
    excludeLargerThan: s.excludeLargerThan === undefined ? Infinity : parseSize(s.excludeLargerThan),
    oneFileSystem: s.oneFileSystem === true,
  };
  return { options, warnings };
}
