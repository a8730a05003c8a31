import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { inject, injectable } from '../vendor.js';
import { UsageError } from '../errors.js';
import { Environment, Logger, ProgressFactory } from '../services.js';
import { EngineHooks, createRestoreRunHooks, type ResizeOutcome, type ResizeRequest, type ResizedPartition, type RestoreRun } from '../hooks.js';
import { HookRunner } from '../hook-runner.js';
import { PluginHost } from '../plugins/plugin-host.js';
import { Repositories } from '../repository/repositories.js';
import type { DamagedObject, Repository } from '../repository/repository.js';
import { RepositoryLocks } from '../repository/lock.js';
import { isFileManifest, requireVolumeManifest, type AnySnapshotManifest, type ImageDigest, type SnapshotManifest } from '../repository/snapshot.js';
import { runRestore, type RestoreDamage, type RestoreOutcome, type RestoreWindow } from '../pipeline/restore.js';
import { mergeRanges, rangesInWindow } from '../pipeline/damage.js';
import type { ByteRange } from '../target.js';
import { openDestination, type Destination, type DestinationOptions } from '../pipeline/destination.js';
import { blockDeviceSize, copySparseImage, refuseExistingWithoutForce } from '../pipeline/staging.js';
import type { WorkerPool } from '../pipeline/worker-pool.js';
import type { LoadedJob } from '../job/job-loader.js';
import { JobRuns, type RunReport } from './job-runs.js';
import { PipelineWorkers } from './pipeline-workers.js';
import { FileRestoreOperation, type FileRestoreResult } from './file-restore.js';
import type { FileRestoreOptions } from '../files/file-restore.js';

export interface RestoreOptions {
  force?: boolean;
  /** Restore only this partition of a disk snapshot. */
  partition?: number;
  /** Write zeros over unused blocks on a block device. */
  zeroUnused?: boolean;
  /** Size of the restored image file, when larger than the image (a bigger virtual disk). */
  size?: number;
  /** Write zeros where data is lost (missing or damaged blobs) instead of failing; the result lists the ranges. */
  ignoreDamage?: boolean;
  /**
   * Onto a block device or an existing image file of the same size (with force): compare each
   * chunk with what is there and fetch and write only those that differ. Default true.
   */
  delta?: boolean;
  /** `--grow [N]`: on a larger destination, extend partition N (true: the last one) and its filesystem to fill it. */
  grow?: number | true;
  /**
   * `--shrink [N]`: fit the image into a smaller target by shrinking partition N's filesystem
   * (true: the source plugin picks); a target smaller than the image shrinks without it.
   */
  shrink?: number | true;
  /** Folder for the sparse staging file a shrink restores into first (default: the system's temporary folder). */
  stagingDir?: string;
}

export interface RestoreResult {
  snapshot: string;
  destination: string;
  /** Bytes written to the destination (zeros included). */
  bytesWritten: number;
  /** Bytes read from the repository (its packs). */
  bytesFetched: number;
  /** Whether the destination was compared with the snapshot and only what differs written. */
  delta: boolean;
  /** With delta: bytes the destination held already. */
  bytesUnchanged?: number;
  /** With delta onto an image file: zero and unused chunks made zeros in place, not compared (zero ranges or punched holes; written only where the file system has neither). */
  bytesZeroed?: number;
  /**
   * Bytes of unused blocks left as the block device held them (no --zero-unused): the digest
   * verified covers them as zeros, so a digest of the device itself differs.
   */
  bytesLeftUnused?: number;
  /** The verified digest of the whole restored image (a partition is verified blob by blob instead). */
  imageDigest?: ImageDigest;
  partition?: number;
  /**
   * Ranges of the destination (offsets from its start) where zeros stand in for bytes the
   * backup could not read (`backup --rescue`); absent when there are none.
   */
  unreadable?: Array<{ offset: number; length: number }>;
  /**
   * Ranges of the destination that hold zeros in place of lost data, merged: what this
   * restore could not read (with ignoreDamage) and what a repair recorded as lost. Absent when none.
   */
  lost?: ByteRange[];
  /** With ignoreDamage: the damaged objects this restore met, and the ranges each cost. */
  damage?: RestoreDamage[];
  /** The snapshot was made by `cairn repair snapshots` from this one. */
  repairedFrom?: string;
  /** What `--grow`/`--shrink` changed: partitions (or the bare filesystem) with their old and new place and size. */
  resized?: ResizedPartition[];
}

/** Writes the snapshot's image (or window) to a destination. */
type WriteImage = (destination: Destination) => Promise<RestoreOutcome>;

/** Unreadable ranges named in the restore's warning; `--json` and `cairn show` list them all. */
const RANGES_IN_WARNING = 3;

/** What to restore: a snapshot, and the whole image or one window of it. */
interface RestorePlan {
  id: string;
  manifest: SnapshotManifest;
  window: RestoreWindow | undefined;
  /** Bytes the destination must hold. */
  size: number;
}

/** `cairn restore`: writes a snapshot's image, or one partition of it, to a file or block device. */
@injectable()
export class RestoreOperation {
  constructor(
    @inject(EngineHooks) private readonly hooks: Readonly<EngineHooks>,
    @inject(HookRunner) private readonly runner: HookRunner,
    @inject(JobRuns) private readonly runs: JobRuns,
    @inject(PluginHost) private readonly plugins: PluginHost,
    @inject(Repositories) private readonly repositories: Repositories,
    @inject(PipelineWorkers) private readonly workers: PipelineWorkers,
    @inject(RepositoryLocks) private readonly locks: RepositoryLocks,
    @inject(ProgressFactory) private readonly progress: ProgressFactory,
    @inject(Environment) private readonly environment: Environment,
    @inject(Logger) private readonly logger: Logger,
    @inject(FileRestoreOperation) private readonly files: FileRestoreOperation,
  ) {}

  /**
   * `to` is relative to the working folder; `ref` is `latest`, an id or an id prefix. Given
   * `files` (what the CLI passes), a file snapshot is restored into the folder `to`; without,
   * only image snapshots are.
   */
  run(job: LoadedJob, ref: string, to: string, options?: RestoreOptions): Promise<RunReport<RestoreResult>>;
  run(job: LoadedJob, ref: string, to: string, options: RestoreOptions, files: FileRestoreOptions): Promise<RunReport<RestoreResult | FileRestoreResult>>;
  run(job: LoadedJob, ref: string, to: string, options: RestoreOptions = {}, files?: FileRestoreOptions): Promise<RunReport<RestoreResult | FileRestoreResult>> {
    if (options.size !== undefined && options.partition !== undefined) throw new UsageError('--size applies to whole images, not to --partition');
    const run: RestoreRun = { job: job.info, operation: 'restore', hooks: createRestoreRunHooks() };
    return this.runs.run(run, async (tapFailures) => {
      const { result, done } = await this.workers.withPool((pool) =>
        this.repositories.withRepository(job, async (repository) => {
          const destination = resolve(this.environment.cwd, to);
          const { id, manifest } = await this.#resolve(repository, ref);
          if (files && isFileManifest(manifest)) return { result: await this.files.restore({ job, pool, repository, id, manifest, to: destination, options: checkedFileOptions(options, files) }), done: undefined };
          if (files) refuseFileOptions(files);
          return this.#restore(job, run, pool, repository, id, requireVolumeManifest(id, manifest, 'an image restore'), destination, options);
        }),
      );
      if (done) tapFailures.push(...(await this.runner.after(run.hooks.done, done)));
      return result;
    });
  }

  async #resolve(repository: Repository, ref: string): Promise<{ id: string; manifest: AnySnapshotManifest }> {
    const damaged: DamagedObject[] = [];
    const { id, manifest } = await repository.resolveSnapshot(ref, damaged);
    for (const object of damaged) this.logger.warn(`${object.message}; it is left out (restoring snapshot ${id.slice(0, 12)}, which does not need it)`);
    return { id, manifest };
  }

  async #restore(job: LoadedJob, run: RestoreRun, pool: WorkerPool, repository: Repository, id: string, manifest: SnapshotManifest, to: string, options: RestoreOptions) {
    const plan = this.#plan(id, manifest, options);
    // The source plugin taps the restore hooks (e.g. to move a GPT backup header to the end of a larger disk).
    await this.plugins.activate(`onSource:${plan.manifest.source.type}`).catch((err: unknown) => this.logger.warn((err as Error).message));
    // Announced once the plugins that may tap it are active.
    await this.runner.before(this.hooks.restore, run);
    const resize = await this.#resizeRequest(plan, to, options);
    if (resize && !(await run.hooks.checkResize.promise(resize))) {
      throw new UsageError(`--${resize.mode}: no plugin can resize an image of a ${plan.manifest.source.type} source`);
    }
    return this.locks.withLock(repository, 'restore', 'shared', async () => {
      const index = await this.workers.prepare(pool, repository, job, 'read');
      // Damage elsewhere is no reason to fail: only what this snapshot needs counts.
      for (const damaged of index.unreadable) this.logger.warn(`${damaged.message}; restoring from the other index files (\`cairn repair index\` rebuilds the index)`);
      const write = (destination: Destination) =>
        runRestore({
          repository,
          index,
          pool,
          snapshot: plan.id,
          manifest: plan.manifest,
          destination,
          progress: this.progress.create(),
          window: plan.window,
          zeroUnused: options.zeroUnused,
          ignoreDamage: options.ignoreDamage,
          beforeWrite: () => this.runner.before(run.hooks.beforeWrite, { destination: destination.path, kind: destination.kind, snapshot: plan.id, manifest: plan.manifest }),
        });
      // A resize changes the image after it is written: only an unchanged layout compares with what is there.
      const delta = options.delta !== false && resize === undefined && plan.size === (plan.window?.length ?? plan.manifest.size);
      const { destination, outcome, resized } =
        resize?.mode === 'shrink' ? await this.#restoreShrunk(run, resize, to, options, write) : await this.#restoreInPlace(run, resize, to, plan.size, { force: options.force ?? false, delta }, write);
      const { bytesWritten, bytesFetched, bytesUnchanged, bytesLeftUnused, bytesZeroed, damage } = outcome;
      const partial = plan.window !== undefined;
      // The image digest is checked only where nothing stands in for lost data; otherwise every blob was verified instead.
      const digestChecked = !partial && !options.ignoreDamage && !plan.manifest.lost?.length;
      const unreadable = unreadableIn(plan);
      const result: RestoreResult = {
        snapshot: plan.id,
        destination: destination.path,
        bytesWritten,
        bytesFetched,
        delta: destination.read !== undefined,
        ...(destination.read !== undefined && { bytesUnchanged }),
        ...(bytesLeftUnused > 0 && { bytesLeftUnused }),
        ...(bytesZeroed > 0 && { bytesZeroed }),
        ...(partial ? { partition: options.partition } : digestChecked && { imageDigest: plan.manifest.imageDigest }),
        ...(unreadable.length > 0 && { unreadable }),
      };
      if (unreadable.length > 0) this.logger.warn(describeZeros(destination.path, unreadable));
      const recorded = rangesInWindow(plan.manifest.lost ?? [], plan.window ?? { offset: 0, length: plan.manifest.size });
      const lost = mergeRanges([...recorded, ...damage.flatMap((d) => d.ranges)]);
      if (lost.length > 0) result.lost = lost;
      if (options.ignoreDamage) result.damage = damage;
      if (plan.manifest.repairedFrom) result.repairedFrom = plan.manifest.repairedFrom;
      if (resized) result.resized = resized.resized;
      return { result, done: { destination: destination.path, snapshot: plan.id, bytesWritten, manifest: plan.manifest, partial } };
    });
  }

  #plan(id: string, manifest: SnapshotManifest, options: RestoreOptions): RestorePlan {
    if (options.partition !== undefined && (options.grow !== undefined || options.shrink !== undefined)) {
      throw new UsageError('--grow and --shrink apply to whole images, not to --partition');
    }
    if (options.grow !== undefined && options.shrink !== undefined) throw new UsageError('--grow and --shrink exclude each other');
    const window = options.partition === undefined ? undefined : partitionWindow(id, manifest, options.partition);
    return { id, manifest, window, size: window ? window.length : Math.max(manifest.size, options.size ?? 0) };
  }

  /**
   * Whether the restore changes the disk's size: a shrink when the target (a block device, or
   * `--size`) is smaller than the image, or `--shrink` to a file without `--size` (as small as
   * the data allows); a grow with `--grow` onto a larger one. Otherwise the layout is kept.
   */
  async #resizeRequest(plan: RestorePlan, to: string, options: RestoreOptions): Promise<ResizeRequest | undefined> {
    if (plan.window) return undefined;
    const size = (await blockDeviceSize(to)) ?? options.size;
    const { manifest } = plan;
    const request = { image: to, manifest, ...(size !== undefined && { size }) };
    if ((size !== undefined && size < manifest.size) || (options.shrink !== undefined && size === undefined)) {
      if (options.grow !== undefined) throw new UsageError(`--grow: ${to} (${size} bytes) is smaller than the image (${manifest.size} bytes); without --grow it is shrunk to fit`);
      return { ...request, mode: 'shrink', ...(typeof options.shrink === 'number' && { partition: options.shrink }) };
    }
    if (options.shrink !== undefined) this.logger.warn(`--shrink: ${to} holds the whole image (${manifest.size} bytes): nothing to shrink, the layout is kept`);
    if (options.grow === undefined) return undefined;
    if (size === undefined || size === manifest.size) {
      this.logger.warn(`--grow: ${to} will be as large as the image (${manifest.size} bytes): nothing to grow (--size makes an image file larger)`);
      return undefined;
    }
    return { ...request, mode: 'grow', ...(typeof options.grow === 'number' && { partition: options.grow }) };
  }

  /** Restores onto the destination itself, then grows it when asked. */
  async #restoreInPlace(run: RestoreRun, resize: ResizeRequest | undefined, to: string, size: number, options: DestinationOptions, write: WriteImage) {
    const destination = await openDestination(to, size, options);
    const outcome = await write(destination);
    const resized = resize ? await this.#resize(run, { ...resize, image: destination.path }) : undefined;
    return { destination, outcome, resized };
  }

  /**
   * A shrink: the image is restored (and verified) into a sparse staging file, shrunk there by
   * the source plugin, and only then copied to the target, which nothing touches before: a
   * target too small is refused with the target as it was.
   */
  async #restoreShrunk(run: RestoreRun, resize: ResizeRequest, to: string, options: RestoreOptions, write: WriteImage) {
    await refuseExistingWithoutForce(to, options.force ?? false);
    const folder = await mkdtemp(join(options.stagingDir ?? tmpdir(), 'cairn-shrink-')).catch((err: unknown) => {
      throw new UsageError(`Cannot make the staging folder of the shrink in ${options.stagingDir ?? tmpdir()} (--staging-dir): ${(err as Error).message}`, { cause: err });
    });
    try {
      const staging = await openDestination(join(folder, 'image'), resize.manifest.size, { force: false });
      const { partitions } = resize.manifest.layout;
      const used = partitions.length ? partitions.reduce((sum, p) => sum + (p.usedBytes ?? p.size), 0) : resize.manifest.size;
      this.logger.info(`restoring into the sparse staging file ${staging.path} first (it takes about ${used} bytes of ${folder}: the used data)`);
      const staged = await write(staging);
      const resized = await this.#resize(run, { ...resize, image: staging.path });
      const destination = await openDestination(to, resized.size, { force: options.force ?? false });
      const bytesWritten = await copySparseImage(staging.path, resized.size, destination);
      return { destination, outcome: { ...staged, bytesWritten, bytesUnchanged: 0, bytesLeftUnused: 0, bytesZeroed: 0 }, resized };
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  }

  async #resize(run: RestoreRun, request: ResizeRequest): Promise<ResizeOutcome> {
    const outcome = await run.hooks.resize.promise(request);
    if (!outcome) throw new UsageError(`--${request.mode}: no plugin can resize an image of a ${request.manifest.source.type} source`);
    for (const r of outcome.resized) {
      this.logger.info(`${r.partition === undefined ? 'the filesystem' : `partition ${r.partition}`} (${r.filesystem}): ${r.oldSize} → ${r.newSize} bytes at offset ${r.newOffset} (${r.tool})`);
    }
    return outcome;
  }
}

/** The image options mean nothing for a file snapshot: refused rather than ignored. */
function checkedFileOptions(options: RestoreOptions, files: FileRestoreOptions): FileRestoreOptions {
  const given = [
    options.partition !== undefined && '--partition',
    options.size !== undefined && '--size',
    options.grow !== undefined && '--grow',
    options.shrink !== undefined && '--shrink',
    options.zeroUnused && '--zero-unused',
    options.ignoreDamage && '--ignore-damage',
    options.force && '--force (--overwrite says what happens to existing files)',
  ].filter(Boolean);
  if (given.length > 0) throw new UsageError(`${given.join(', ')}: not for a file snapshot, which is restored into a folder`);
  return files;
}

/** The file options mean nothing for an image snapshot. */
function refuseFileOptions(files: FileRestoreOptions): void {
  const given = [files.include?.length && '--include', files.exclude?.length && '--exclude', files.overwrite && '--overwrite', files.verify && '--verify'].filter(Boolean);
  if (given.length > 0) throw new UsageError(`${given.join(', ')}: only for a file snapshot; this one is a volume image (every restored chunk is verified anyway)`);
}

function partitionWindow(id: string, manifest: SnapshotManifest, index: number): RestoreWindow {
  const partition = manifest.layout.partitions.find((p) => p.index === index);
  if (!partition) {
    const numbers = manifest.layout.partitions.map((p) => p.index);
    throw new UsageError(`Snapshot ${id.slice(0, 12)} has no partition ${index}${numbers.length ? ` (it has ${numbers.join(', ')})` : ' (it is not a partitioned disk)'}`);
  }
  return { offset: partition.offset, length: partition.size };
}

/** The snapshot's unreadable ranges within what is restored, as offsets of the destination. */
function unreadableIn(plan: RestorePlan): Array<{ offset: number; length: number }> {
  const from = plan.window?.offset ?? 0;
  const to = plan.window ? from + plan.window.length : plan.manifest.size;
  const ranges: Array<{ offset: number; length: number }> = [];
  for (const range of plan.manifest.unreadable ?? []) {
    const start = Math.max(range.offset, from);
    const end = Math.min(range.offset + range.length, to);
    if (end > start) ranges.push({ offset: start - from, length: end - start });
  }
  return ranges;
}

function describeZeros(path: string, ranges: ReadonlyArray<{ offset: number; length: number }>): string {
  const total = ranges.reduce((sum, r) => sum + r.length, 0);
  const named = ranges.slice(0, RANGES_IN_WARNING).map((r) => `${r.length} bytes at offset ${r.offset}`);
  const more = ranges.length > RANGES_IN_WARNING ? `, and ${ranges.length - RANGES_IN_WARNING} more (--json lists them all)` : '';
  return `zeros stand in for ${ranges.length} range(s) of ${path} (${total} bytes in all) that the backup could not read from its source: ${named.join(', ')}${more}`;
}
