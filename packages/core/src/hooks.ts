import { AsyncSeriesHook, SyncHook } from './vendor.js';
import type { OpenedSource, VolumeLayout } from './source.js';

/*
 * The extension points of a run, all declared here. Two levels, as in webpack:
 * `EngineHooks` live as long as the process; a `BackupRun` or `RestoreRun` carries the hooks
 * of one run, so taps made inside `engine.hooks.backup`/`engine.hooks.restore` end with the run.
 * Per-chunk work is deliberately not on a hook.
 */

export interface JobInfo {
  name: string;
  /** Absolute path of the job file. */
  file: string;
  /** The validated job object. */
  job: Record<string, unknown>;
}

export interface SnapshotSaved {
  id: string;
  time: string;
  bytesRead: number;
  bytesAdded: number;
}

export interface BackupRunHooks {
  /** The source is open and its layout known; nothing has been read yet. */
  sourceOpened: AsyncSeriesHook<[OpenedSource]>;
  /** Every pack and index the snapshot needs is durable; the manifest is about to be written. */
  beforeSnapshot: AsyncSeriesHook<[]>;
  /** The snapshot manifest is written. */
  snapshotSaved: AsyncSeriesHook<[SnapshotSaved]>;
}

export interface RestoreRunHooks {
  /** The destination is checked and about to be written; nothing has been written yet. */
  beforeWrite: AsyncSeriesHook<[{ destination: string; snapshot: string }]>;
  /** Every byte is written and committed, and the image digest matched the snapshot's. */
  done: AsyncSeriesHook<[RestoreDone]>;
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

export interface BackupRun {
  readonly job: JobInfo;
  readonly hooks: Readonly<BackupRunHooks>;
}

export interface RestoreRun {
  readonly job: JobInfo;
  readonly hooks: Readonly<RestoreRunHooks>;
}

export type RunOutcome = { ok: true } | { ok: false; error: unknown };

export interface EngineHooks {
  /** Before a backup touches the source or the repository (the job's `hooks.before` commands run here). */
  beforeRun: AsyncSeriesHook<[JobInfo]>;
  /** A backup run was created; tap its hooks here. */
  backup: SyncHook<[BackupRun]>;
  /** A restore run was created; tap its hooks here. */
  restore: SyncHook<[RestoreRun]>;
  /** A backup failed (after `beforeRun` succeeded or failed). */
  failed: AsyncSeriesHook<[JobInfo, unknown]>;
  /** Always after a backup, success or failure (the job's `hooks.after` commands run here). */
  afterRun: AsyncSeriesHook<[JobInfo, RunOutcome]>;
}

export function createEngineHooks(): Readonly<EngineHooks> {
  return Object.freeze({
    beforeRun: new AsyncSeriesHook<[JobInfo]>(['job']),
    backup: new SyncHook<[BackupRun]>(['run']),
    restore: new SyncHook<[RestoreRun]>(['run']),
    failed: new AsyncSeriesHook<[JobInfo, unknown]>(['job', 'error']),
    afterRun: new AsyncSeriesHook<[JobInfo, RunOutcome]>(['job', 'outcome']),
  });
}

export function createBackupRunHooks(): Readonly<BackupRunHooks> {
  return Object.freeze({
    sourceOpened: new AsyncSeriesHook<[OpenedSource]>(['source']),
    beforeSnapshot: new AsyncSeriesHook<[]>([]),
    snapshotSaved: new AsyncSeriesHook<[SnapshotSaved]>(['snapshot']),
  });
}

export function createRestoreRunHooks(): Readonly<RestoreRunHooks> {
  return Object.freeze({
    beforeWrite: new AsyncSeriesHook<[{ destination: string; snapshot: string }]>(['info']),
    done: new AsyncSeriesHook<[RestoreDone]>(['info']),
  });
}

/** Service id of the process-wide hooks. */
export const EngineHooks = Symbol('EngineHooks');
