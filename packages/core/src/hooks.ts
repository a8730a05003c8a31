import { AsyncSeriesBailHook, AsyncSeriesHook, SyncHook } from './vendor.js';
import type { OpenedSource, VolumeLayout } from './source.js';
import type { OpenedFileTree } from './files/file-source.js';
import type { AnySnapshotManifest, SnapshotManifest } from './repository/snapshot.js';
import type { TapFailure } from './hook-runner.js';
import type { BackupOptions } from './operations/backup.js';

/*
 * The extension points of a run, all declared here. Two levels, as in webpack:
 * `EngineHooks` live as long as the process; a `BackupRun` or `RestoreRun` carries the hooks
 * of one run, so taps made inside `engine.hooks.backup`/`engine.hooks.restore` end with the run.
 * Per-chunk work is deliberately not on a hook.
 *
 * The core calls every hook through `HookRunner`, which handles a tap's error the same way
 * everywhere: in a `before` hook (beforeRun, backup, restore, sourceOpened, beforeSnapshot,
 * beforeWrite) it aborts the operation, named after the tap; in an `after` hook (snapshotSaved,
 * done, failed, afterRun) it is logged with the tap's name, the other taps still run, and the
 * command exits 1 after reporting its result.
 */

export interface JobInfo {
  name: string;
  /** Absolute path of the job file. */
  file: string;
  /** The validated job object, schema defaults applied. */
  job: Record<string, unknown>;
}

/** What a run does with its job. */
export type JobOperation = 'backup' | 'restore';

/** One run of a job: what `beforeRun`, `failed` and `afterRun` receive. */
export interface JobRun {
  readonly job: JobInfo;
  readonly operation: JobOperation;
}

export interface SnapshotSaved {
  id: string;
  time: string;
  bytesRead: number;
  bytesAdded: number;
  /** A volume image's manifest, or a file snapshot's (`isFileManifest`). */
  manifest: AnySnapshotManifest;
}

/** What a `beforeSnapshot` tap returns to stop the snapshot from being written. */
export interface SnapshotVeto {
  abort: string;
}

export interface BackupRunHooks {
  /** The source is open and its layout known; nothing has been read yet. */
  sourceOpened: AsyncSeriesHook<[OpenedSource | OpenedFileTree]>;
  /**
   * Every pack and index the snapshot needs is durable and the manifest is complete; it is
   * about to be written. A tap may inspect it, or return `{ abort: reason }` to stop the
   * snapshot (the run fails with that reason; the stored data is reused by the next run).
   */
  beforeSnapshot: AsyncSeriesBailHook<[AnySnapshotManifest], SnapshotVeto | undefined>;
  /** The snapshot manifest is written. */
  snapshotSaved: AsyncSeriesHook<[SnapshotSaved]>;
}

export interface BeforeWrite {
  destination: string;
  kind: 'file' | 'block-device';
  snapshot: string;
  manifest: SnapshotManifest;
}

export interface RestoreRunHooks {
  /** The destination is checked and about to be written; nothing has been written yet. */
  beforeWrite: AsyncSeriesHook<[BeforeWrite]>;
  /** Every byte is written and committed, and the image digest matched the snapshot's. */
  done: AsyncSeriesHook<[RestoreDone]>;
  /**
   * Before anything is written, a restore that grows or shrinks the disk (`--grow`, `--shrink`,
   * a smaller target) asks whether it can be done: the source plugin that can returns true, and
   * throws (TargetTooSmallError, UsageError) when it cannot; nobody answering means no plugin can.
   */
  checkResize: AsyncSeriesBailHook<[ResizeRequest], true | undefined>;
  /** The restored image is resized: grown in place on the destination, or shrunk in a staging file. */
  resize: AsyncSeriesBailHook<[ResizeRequest], ResizeOutcome | undefined>;
}

/** What a restore that changes the disk's size asks the source plugin to do. */
export interface ResizeRequest {
  mode: 'grow' | 'shrink';
  /**
   * The restored image: the destination itself when growing, the staging file when shrinking.
   * In `checkResize` (nothing restored yet) the destination the user named.
   */
  image: string;
  /** Bytes the image must end up with; undefined when shrinking as far as the data allows (`--shrink` to a file without `--size`). */
  size?: number;
  /** The partition to resize (`--grow N`, `--shrink N`); undefined: the plugin picks (the last one; the shrinkable one). */
  partition?: number;
  manifest: RestoreDone['manifest'];
}

/** One partition (or a bare filesystem: no `partition`) a restore resized. */
export interface ResizedPartition {
  partition?: number;
  filesystem: string;
  oldOffset: number;
  newOffset: number;
  oldSize: number;
  newSize: number;
  /** The command that resized the filesystem (`resize2fs`, `ntfsresize`, …), or `moved` for a partition only moved. */
  tool: string;
}

export interface ResizeOutcome {
  /** Bytes of the resized image. */
  size: number;
  resized: ResizedPartition[];
}

export interface RestoreDone {
  destination: string;
  snapshot: string;
  bytesWritten: number;
  /** What was restored: the snapshot's manifest (its layout, size and source). */
  manifest: { size: number; layout: VolumeLayout; source: { type: string; path: string } };
  /** True when only part of the image (one partition) was restored. */
  partial: boolean;
}

export interface BackupRun extends JobRun {
  readonly operation: 'backup';
  readonly hooks: Readonly<BackupRunHooks>;
  /** What the backup was asked to do (`forget` is for the retention tap). */
  readonly options: Readonly<BackupOptions>;
}

export interface RestoreRun extends JobRun {
  readonly operation: 'restore';
  readonly hooks: Readonly<RestoreRunHooks>;
}

/**
 * How a run ended. A successful run's `tapFailures` are the `after` taps that failed so far
 * (the run's own hooks, then the `afterRun` taps before this one): the result stands, but the
 * command exits 1.
 */
export type RunOutcome = { ok: true; tapFailures?: readonly TapFailure[] } | { ok: false; error: unknown };

/**
 * Stages (tapable's `stage`) for taps whose place among the others matters; taps without one
 * are at stage 0. The job's `after` commands release what its `before` commands took (a frozen
 * file system), so they go first in `snapshotSaved` and `failed`; `onSuccess`/`onError` report
 * the whole run, so they go last in `afterRun`.
 */
export const HOOK_STAGE_RELEASE = -100;
export const HOOK_STAGE_REPORT = 100;

export interface EngineHooks {
  /** Before a backup or restore touches the source, the repository or the destination (the job's `hooks.before` commands run here for backups). */
  beforeRun: AsyncSeriesHook<[JobRun]>;
  /** A backup run was created; tap its hooks here. */
  backup: SyncHook<[BackupRun]>;
  /** A restore run was created; tap its hooks here. */
  restore: SyncHook<[RestoreRun]>;
  /** A backup or restore failed, also when `beforeRun` failed; receives the error. */
  failed: AsyncSeriesHook<[JobRun, unknown]>;
  /** Always after a backup or restore, success or failure (the job's `hooks.after` commands run here for backups). */
  afterRun: AsyncSeriesHook<[JobRun, RunOutcome]>;
}

/** Service id of the process-wide hooks. */
export const EngineHooks = Symbol.for('cairn.EngineHooks');

export function createEngineHooks(): Readonly<EngineHooks> {
  return Object.freeze({
    beforeRun: new AsyncSeriesHook<[JobRun]>(['run'], 'beforeRun'),
    backup: new SyncHook<[BackupRun]>(['run'], 'backup'),
    restore: new SyncHook<[RestoreRun]>(['run'], 'restore'),
    failed: new AsyncSeriesHook<[JobRun, unknown]>(['run', 'error'], 'failed'),
    afterRun: new AsyncSeriesHook<[JobRun, RunOutcome]>(['run', 'outcome'], 'afterRun'),
  });
}

export function createBackupRunHooks(): Readonly<BackupRunHooks> {
  return Object.freeze({
    sourceOpened: new AsyncSeriesHook<[OpenedSource | OpenedFileTree]>(['source'], 'sourceOpened'),
    beforeSnapshot: new AsyncSeriesBailHook<[AnySnapshotManifest], SnapshotVeto | undefined>(['manifest'], 'beforeSnapshot'),
    snapshotSaved: new AsyncSeriesHook<[SnapshotSaved]>(['snapshot'], 'snapshotSaved'),
  });
}

export function createRestoreRunHooks(): Readonly<RestoreRunHooks> {
  return Object.freeze({
    beforeWrite: new AsyncSeriesHook<[BeforeWrite]>(['write'], 'beforeWrite'),
    done: new AsyncSeriesHook<[RestoreDone]>(['info'], 'done'),
    checkResize: new AsyncSeriesBailHook<[ResizeRequest], true | undefined>(['request'], 'checkResize'),
    resize: new AsyncSeriesBailHook<[ResizeRequest], ResizeOutcome | undefined>(['request'], 'resize'),
  });
}

/**
 * Something in the core that taps the engine hooks when the core starts (the job file's
 * commands; later retention and notifications). Bind it with
 * `bind(HookContribution).toService(MyTaps)` in a container module.
 */
export const HookContribution = Symbol.for('cairn.HookContribution');
export interface HookContribution {
  tapHooks(hooks: Readonly<EngineHooks>): void;
}
