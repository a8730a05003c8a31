import { createHash } from 'node:crypto';
import type { Logger } from '../services.js';
import { createCore } from '../create-core.js';
import { JobLoader } from '../job/job-loader.js';
import { Repositories } from '../repository/repositories.js';
import { cdcParametersOf, type Repository } from '../repository/repository.js';
import { BlobType } from '../repository/format.js';
import type { FileSnapshotManifest } from '../repository/snapshot.js';
import { Packer } from '../pipeline/packer.js';
import type { WorkerPool } from '../pipeline/worker-pool.js';
import { PipelineWorkers } from '../operations/pipeline-workers.js';
import { encodeTree, type ContentChunk, type EntryType, type TreeEntry } from '../files/tree.js';

/*
 * File snapshots built by hand, for tests of what reads them (ls, find, diff, restore) without
 * the files source: trees of made-up entries, content cut into fixed 64 KiB pieces (all-zero
 * pieces left out as holes), stored as real blobs in real packs and a real manifest.
 */

/** One entry: a file when it has `content`, a folder when it has `children`, else as `type` says. */
export interface NodeSpec {
  type?: EntryType;
  content?: Buffer | string;
  children?: Record<string, NodeSpec>;
  /** The name's bytes, instead of the key it is listed under (for names that are not UTF-8). */
  nameBytes?: Buffer;
  target?: Buffer | string;
  rdev?: bigint;
  mode?: number;
  uid?: number;
  gid?: number;
  user?: string;
  group?: string;
  /** ISO 8601, or nanoseconds since the epoch. Default 2026-11-01T00:00:00Z. */
  mtime?: string | bigint;
  links?: number;
  inode?: bigint;
  xattrs?: Record<string, Buffer | string>;
  error?: string;
  changed?: boolean;
}

export interface HandBuiltSnapshot {
  job: string;
  time: string;
  /** The top entries of the root tree (e.g. `{ home: { children: … } }`). */
  root: Record<string, NodeSpec>;
  /** Default: the paths of the root's top entries. */
  paths?: string[];
  hostname?: string;
  parent?: string;
  tags?: string[];
}

const PIECE = 64 * 1024;
const DEFAULT_MTIME = BigInt(Date.parse('2026-11-01T00:00:00Z')) * 1_000_000n;

/** Stores the snapshots' blobs through one packer and saves their manifests, in order; returns their ids. */
export async function storeFileSnapshots(repository: Repository, pool: WorkerPool, snapshots: readonly HandBuiltSnapshot[]): Promise<string[]> {
  const index = await repository.loadIndex('write');
  const stored = new Set<string>();
  const packer = new Packer(repository);
  const store = async (type: BlobType, plain: Buffer): Promise<string> => {
    const { id, sealed } = await pool.sealBytes(plain);
    const hex = id.toString('hex');
    if (!stored.has(hex) && !index.has(hex)) await packer.add(type, id, sealed, plain.length);
    stored.add(hex);
    return hex;
  };
  const trees: string[] = [];
  for (const snapshot of snapshots) trees.push(await storeFolder(snapshot.root, store, Buffer.from('/')));
  await packer.flush();
  const ids: string[] = [];
  for (const [i, snapshot] of snapshots.entries()) ids.push((await repository.saveSnapshot(manifestOf(repository, snapshot, trees[i]!))).id);
  return ids;
}

type Store = (type: BlobType, plain: Buffer) => Promise<string>;

async function storeFolder(children: Record<string, NodeSpec>, store: Store, path: Buffer): Promise<string> {
  const entries: TreeEntry[] = [];
  for (const [name, spec] of Object.entries(children)) entries.push(await entryOf(Buffer.from(name), spec, store, path));
  return store(BlobType.tree, encodeTree(entries));
}

async function entryOf(key: Buffer, spec: NodeSpec, store: Store, parent: Buffer): Promise<TreeEntry> {
  const path = Buffer.concat([parent, spec.nameBytes ?? key, Buffer.from('/')]);
  const type: EntryType = spec.type ?? (spec.children ? 'dir' : spec.content !== undefined ? 'file' : 'file');
  const mtimeNs = typeof spec.mtime === 'string' ? BigInt(Date.parse(spec.mtime)) * 1_000_000n : (spec.mtime ?? DEFAULT_MTIME);
  const content = type === 'file' ? Buffer.from(spec.content ?? '') : undefined;
  const target = spec.target === undefined ? undefined : Buffer.from(spec.target);
  const entry: TreeEntry = {
    name: spec.nameBytes ?? key,
    type,
    mode: spec.mode ?? (type === 'dir' ? 0o755 : type === 'symlink' ? 0o777 : 0o644),
    uid: spec.uid ?? 0,
    gid: spec.gid ?? 0,
    ...(spec.user !== undefined ? { user: spec.user } : spec.uid === undefined && { user: 'root' }),
    ...(spec.group !== undefined ? { group: spec.group } : spec.gid === undefined && { group: 'root' }),
    mtimeNs,
    ctimeNs: mtimeNs,
    atimeNs: mtimeNs,
    size: content?.length ?? target?.length ?? 0,
    // Stable across snapshots, as a real file's is: unchanged folders keep their tree id.
    inode: spec.inode ?? createHash('sha256').update(path).digest().readBigUInt64LE(0) >> 16n,
    device: 2049n,
    links: spec.links ?? (type === 'dir' ? 2 : 1),
  };
  if (spec.rdev !== undefined) entry.rdev = spec.rdev;
  if (target) entry.target = target;
  if (spec.xattrs) entry.xattrs = Object.entries(spec.xattrs).map(([name, value]) => ({ name, value: Buffer.from(value) }));
  if (content) entry.content = await storeContent(content, store);
  if (type === 'dir' && spec.error === undefined) entry.subtree = await storeFolder(spec.children ?? {}, store, path);
  if (spec.error !== undefined) entry.error = spec.error;
  if (spec.changed) entry.changed = true;
  return entry;
}

async function storeContent(content: Buffer, store: Store): Promise<ContentChunk[]> {
  const chunks: ContentChunk[] = [];
  for (let offset = 0; offset < content.length; offset += PIECE) {
    const piece = content.subarray(offset, offset + PIECE);
    if (piece.every((byte) => byte === 0)) continue;
    chunks.push({ offset, length: piece.length, id: await store(BlobType.chunk, piece) });
  }
  return chunks;
}

function manifestOf(repository: Repository, snapshot: HandBuiltSnapshot, tree: string): FileSnapshotManifest {
  return {
    version: 3,
    kind: 'files',
    time: snapshot.time,
    hostname: snapshot.hostname ?? 'testhost',
    job: snapshot.job,
    ...(snapshot.tags && { tags: snapshot.tags }),
    source: { type: 'files', path: (snapshot.paths ?? Object.keys(snapshot.root).map((name) => `/${name}`)).join(', ') },
    paths: snapshot.paths ?? Object.keys(snapshot.root).map((name) => `/${name}`),
    tree,
    ...(snapshot.parent && { parent: snapshot.parent }),
    chunker: cdcParametersOf(repository.config, repository.location),
    compression: 'none',
    stats: { files: 0, dirs: 0, others: 0, totalBytes: 0, bytesRead: 0, bytesAdded: 0, unchangedFiles: 0, dataChunks: 0, newChunks: 0, treeBlobs: 0, changedWhileRead: 0, durationMs: 0 },
  };
}

export interface WriteFileSnapshotsOptions {
  /** The job file whose repository gets the snapshots (its target must be enabled in `pluginsFile`). */
  job: string;
  pluginsFile: string;
  /** Holds the repository password the job names. */
  env: NodeJS.ProcessEnv;
  snapshots: readonly HandBuiltSnapshot[];
}

/** `storeFileSnapshots` into a job's repository, from this process, as a backup would store them. */
export async function writeFileSnapshots(options: WriteFileSnapshotsOptions): Promise<string[]> {
  const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
  const core = await createCore({ pluginsFile: options.pluginsFile, logger: quiet, env: options.env });
  try {
    const job = await core.get(JobLoader).load(options.job);
    const workers = core.get(PipelineWorkers);
    return await workers.withPool((pool) =>
      core.get(Repositories).withRepository(job, async (repository) => {
        await workers.start(pool, repository, job, 'write');
        return storeFileSnapshots(repository, pool, options.snapshots);
      }),
    );
  } finally {
    await core.dispose();
  }
}
