/*
 * The shapes of the daemon's /api/: the daemon's state and job types come from @cairn/core (as
 * types only); the command outputs the pages read are typed here, the rest passes through.
 */

// The daemon's own types, imported for their shapes only (erased from the bundle).
export type { JobState, JobSummary, RestorePreview, RunningTask, RunRecord, RunResult, TaskKind, TaskState, TaskProgress as Progress } from '@cairn/core';
import type { JobState, RunRecord } from '@cairn/core';

export interface StatusView {
  daemon: { running: boolean; pid: number; hostname: string; started: string; updated: string; stopped?: string };
  stateDir: string;
  jobs: JobState[];
  problems: Array<{ file: string; message: string; time: string }>;
}

export interface SnapshotEntry {
  id: string;
  time: string;
  hostname?: string;
  job?: string;
  tags?: string[];
  source?: { type: string; path?: string };
  kind?: 'volume' | 'files';
  paths?: string[];
  size?: number;
  bytesAdded?: number;
  incomplete?: boolean;
  damaged?: boolean;
  layout?: VolumeLayout;
}

export interface PartitionLayout {
  index: number;
  offset: number;
  size: number;
  type?: string;
  name?: string;
  filesystem?: string;
  mode: 'exact' | 'used';
  usedBytes?: number;
  note?: string;
}

export interface VolumeLayout {
  size: number;
  sectorSize: number;
  kind: 'file' | 'block-device';
  partitionTable: { type: 'none' | 'mbr' | 'gpt' };
  filesystem?: string;
  mode: 'exact' | 'used';
  partitions: PartitionLayout[];
  note?: string;
}

/** `cairn show <job> <id> --json`: a volume snapshot carries `layout` and `stats.bytesRead`. */
export interface SnapshotDetail extends SnapshotEntry {
  chunkSize?: number;
  compression?: string;
  stats?: { bytesRead?: number; durationMs?: number; [key: string]: unknown };
}

export interface FileEntry {
  path: string;
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'chardev' | 'blockdev' | 'fifo' | 'socket' | string;
  size: number;
  permissions?: string;
  user?: string;
  group?: string;
  mtime?: string;
  target?: string;
}

export interface CheckSummary {
  job: string;
  lastRun: RunRecord;
  lastSuccess?: RunRecord;
}

export interface LogLine {
  time: string;
  level: string;
  job?: string;
  task?: string;
  message: string;
}

export interface RestoreRequest {
  snapshot: string;
  to: string;
  include?: string[];
  exclude?: string[];
  overwrite?: 'always' | 'if-changed' | 'never';
  force?: boolean;
  confirmDevice?: string;
}

export interface RestoreState {
  restoreId?: string;
  state: 'running' | 'done' | 'failed';
  result?: Record<string, unknown>;
  error?: { code?: string; message: string } | string;
}
