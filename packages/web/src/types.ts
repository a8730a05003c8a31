/*
 * The shapes of the daemon's /api/ as the dashboard contract writes them (see
 * docs/api/openapi.yaml). Only what the pages read is typed; the rest passes through.
 */

export type TaskKind = 'backup' | 'prune' | 'check';
export type RunResult = 'success' | 'warning' | 'failure' | 'skipped' | 'interrupted';

export interface RunRecord {
  task: TaskKind;
  result: RunResult;
  scheduledFor?: string;
  started: string;
  finished: string;
  durationMs: number;
  exitCode?: number;
  snapshot?: string;
  bytesRead?: number;
  bytesAdded?: number;
  error?: string;
}

export interface TaskState {
  schedule: string;
  nextRun?: string;
  running?: { since: string; pid?: number; scheduledFor?: string };
  lastRun?: RunRecord;
  lastSuccess?: RunRecord;
  counts: Partial<Record<RunResult, number>>;
}

export interface Progress {
  bytesDone: number;
  bytesTotal?: number;
  bytesPerSecond?: number;
  etaSeconds?: number;
  phase?: string;
}

export interface RunningTask {
  job: string;
  task: TaskKind | 'restore';
  since: string;
  progress?: Progress;
}

export interface JobSummary {
  name: string;
  file: string;
  kind: 'volume' | 'files';
  source: { type: string; path?: string; paths?: string[] };
  target: { type: string; location: string };
  schedule?: string;
  tasks: Partial<Record<TaskKind, TaskState>>;
  running?: RunningTask;
  history: RunRecord[];
}

export interface JobState {
  name: string;
  file: string;
  repository: string;
  tasks: Partial<Record<TaskKind, TaskState>>;
}

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

export interface RestorePreview {
  to: string;
  kind: 'file' | 'device' | 'folder' | 'new';
  exists: boolean;
  size?: number;
  mounted?: boolean;
  overwrites: string[];
  needsDeviceConfirmation: boolean;
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
