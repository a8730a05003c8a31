import { ExitCode } from '../errors.js';
import type { LoadedJob } from '../job/job-loader.js';
import type { NotifyEvent } from '../notify.js';
import type { CairnOutcome } from './cairn-process.js';
import type { RunRecord, TaskKind } from './state.js';

/** What the daemon hands to the job's notifiers. */
export interface DaemonNotification {
  event: NotifyEvent;
  operation: TaskKind;
  durationMs: number;
  error?: { message: string; code?: string; exitCode?: number };
  warnings: string[];
}

export type DaemonNotify = (job: LoadedJob, notification: DaemonNotification | undefined) => Promise<void>;

/**
 * The notification the daemon sends itself about a finished run, if any. A backup notifies on
 * its own, through the notification tap of its run, about everything that happens inside the
 * run; the daemon speaks only for what the backup could not: a job file it could not load (exit 2),
 * a process that died or was stopped. Prune and check have no run taps: the daemon reports them.
 */
export function notificationOf(task: TaskKind, record: RunRecord, outcome: CairnOutcome): DaemonNotification | undefined {
  const reportedByTheRun = task === 'backup' && record.result !== 'interrupted' && outcome.signal === null && outcome.exitCode !== null && outcome.exitCode !== ExitCode.usage;
  if (reportedByTheRun) return undefined;
  const event: NotifyEvent = record.result === 'success' ? 'success' : record.result === 'failure' ? 'failure' : 'warning';
  const error = record.error && record.result !== 'success' ? { message: record.error, ...(outcome.error?.code && { code: outcome.error.code }), ...(record.exitCode !== undefined && { exitCode: record.exitCode }) } : undefined;
  return { event, operation: task, durationMs: record.durationMs, ...(error && { error }), warnings: record.result === 'warning' && record.error ? [record.error] : [] };
}
