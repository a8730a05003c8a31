// The public API of @cairn/core. Plugins import only from here (and `@cairn/core/testing`).
export * from './errors.js';
export * from './lifecycle.js';
export * from './services.js';
export * from './target.js';
export { TEMP_PREFIX, tempName, tempWriterIsGone } from './temp-names.js';
export * from './source.js';
export * from './codec.js';
export * from './hooks.js';
export * from './plugin.js';
export * from './notify.js';

// One copy of inversify and tapable for every package: plugins use these, never their own.
export { Container, ContainerModule, inject, injectable, multiInject, optional, type ContainerModuleLoadOptions, type ServiceIdentifier } from './vendor.js';
export { AsyncSeriesBailHook, AsyncSeriesHook, SyncHook } from './vendor.js';

export { createCore, createCoreContainer, type Core, type CoreOptions } from './create-core.js';
export { coreModule, SystemClock } from './core-module.js';
export { HookRunner, describeTapFailure, type TapFailure } from './hook-runner.js';
export { JobLoader, type JobConfig, type LoadedJob } from './job/job-loader.js';
export { JobSchema } from './job/job-schema.js';
export { Notifications, NotificationDelivery, DEFAULT_NOTIFY_EVENTS, summarizeNotification, type NotificationInput } from './notifications/notifications.js';
export { BackupNotifications, describeError } from './notifications/backup-notifications.js';
export type { RunReport } from './operations/job-runs.js';
export { InitOperation } from './operations/init.js';
export { BackupOperation, type AnyBackupResult, type BackupOptions, type BackupReport } from './operations/backup.js';
export { RestoreOperation, type RestoreOptions, type RestoreResult } from './operations/restore.js';
// File snapshots: restore into a folder, and dump.
export { FileRestoreOperation, type FileRestoreResult } from './operations/file-restore.js';
export { DumpOperation, type DumpResult } from './operations/dump.js';
export { OVERWRITE_MODES, type FileRestoreOptions, type OverwriteMode, type VerifyReport } from './files/file-restore.js';
export { CheckOperation, type CheckOptions } from './operations/check.js';
export { RepairOperation, type RepairSnapshotsOptions } from './operations/repair.js';
export { ShowOperation, SnapshotsOperation } from './operations/snapshots.js';
export { KeyOperation, type KeyInfo } from './operations/keys.js';
export { PruneOperation, type PruneOptions, type PruneResult } from './operations/prune.js';
export { UnlockOperation, type UnlockResult } from './operations/unlock.js';
export { ForgetOperation, type ForgetOptions, type ForgetResult, type ForgetGroup, type ForgetEntry } from './operations/forget.js';
export type { RetentionPolicy, RetentionSettings } from './retention/policy.js';
export type { CheckSettings, PruneSettings, ScheduleSettings } from './job/schedule-schema.js';
export { RetentionTap, type RetentionApplied } from './retention/retention-tap.js';
export { JobCommands, type RunVerdict } from './job/job-commands.js';
export { DEFAULT_HOOK_TIMEOUT, type HookCommandSpec, type HookPhase, type JobHooks } from './job/hook-command.js';
export type { BackupResult } from './pipeline/backup.js';
export type { CheckProblem, CheckReport, ReadDataSubset } from './pipeline/check.js';
export type { RepairIndexReport, RepairSnapshotsReport, RepairedSnapshot } from './pipeline/repair.js';
export type { RestoreDamage } from './pipeline/restore.js';
export type { Progress } from './pipeline/progress.js';
export { isFileManifest, requireVolumeManifest, type AnySnapshotManifest, type ChunkerParameters, type FileSnapshotManifest, type ImageDigest, type SkippedPath, type SnapshotManifest } from './repository/snapshot.js';
// File snapshots: what a file source hands the core, and the trees they are stored as.
export { isFileTree, type FileMetadata, type FolderListing, type ListedEntry, type ListingProblem, type OpenedFile, type OpenedFileTree, type WholeFileRead } from './files/file-source.js';
export { loadPosix, type Posix } from './files/posix.js';
export { ENTRY_TYPES, compareNames, displayName, isExactUtf8, type ContentChunk, type EntryMetadata, type EntryType, type TreeEntry, type Xattr } from './files/tree.js';
export { FastCdc, gearTable } from './files/cdc.js';
export { findParent, runFileBackup, type FileBackupInput, type FileBackupResult } from './files/file-backup.js';
export type { SnapshotSummary } from './repository/repository.js';
export { allocateAligned, directIoSpan, DIRECT_IO_ALIGNMENT } from './pipeline/aligned-memory.js';
export { TripBatcher, type TripOutcome } from './pipeline/trips.js';
export { YoungGarbage } from './pipeline/young-garbage.js';
export { main, type CliIo } from './cli/main.js';
// The daemon's state file, its metrics and its systemd service (`cairn daemon`, `cairn status`).
export { STATE_FILE, defaultStateDir, type DaemonState, type DaemonProblem, type JobState, type TaskState, type TaskKind, type RunRecord, type RunResult } from './daemon/state.js';
export { readDaemonState, writeDaemonState, daemonIsRunning } from './daemon/state-file.js';
export { renderMetrics, startMetricsServer, writeMetricsTextfile, parseListenAddress, METRICS_CONTENT_TYPE, type MetricsServer, type MetricsServerOptions } from './daemon/metrics.js';
export type { StatusView } from './cli/commands/status.js';
export { installSystemdService, renderSystemdUnit, SYSTEMD_UNIT_NAME, SYSTEMD_UNIT_TEMPLATE, DEFAULT_JOBS_DIR, type SystemdInstallOptions, type SystemdInstallResult } from './daemon/systemd.js';
// The dashboard of `cairn daemon --web`: its API (for clients and tests) and the web app contribution point.
export { OPENAPI_DOCUMENT } from './daemon/web/openapi.js';
export { apiOperations } from './daemon/web/api.js';
export type { JobSummary, RunningTask, TaskProgress, RestoreEvent } from './daemon/web/dashboard.js';
export type { RestorePreview } from './daemon/web/restore-preview.js';
export type { WebAppContribution } from './plugins/manifest.js';
export { CORE_VERSION } from './version.js';
// Block devices: geometry, loop devices, mounts, and what is built on a device (used by sources and restore).
export {
  type DeviceNumber,
  splitDeviceNumber,
  formatDeviceNumber,
  parseDeviceNumber,
  sameDeviceNumber,
  type BlockDeviceGeometry,
  readBlockDeviceGeometry,
  deviceNodePath,
  deviceLabel,
  type LoopBacking,
  type LoopDevice,
  listLoopDevices,
  findLoopDevicesBackedBy,
  loopRangesOverlap,
  type MountInfoEntry,
  parseMountInfo,
  type BlockDeviceLink,
  type RelatedBlockDevice,
  findRelatedBlockDevices,
  findBlockDevicesOverFile,
  describeBlockDevice,
  type DeviceMount,
  findMounts,
  findMountsOfFile,
} from './system/block-device.js';
// Browsing file snapshots (cairn ls, find, diff).
export { requireFileManifest } from './repository/snapshot.js';
export { BrowseOperation, type FileSnapshotRef, type FindOptions } from './operations/browse.js';
export { listPath, type Listing, type ListOptions, type PathEntry } from './files/list.js';
export { findVersions, type FoundVersion } from './files/find.js';
export { diffTrees, type Change, type ChangeKind, type ChangedAspect, type DiffSummary, type SnapshotDiff } from './files/diff.js';
export { compileGlob, type PathMatcher } from './files/glob.js';
