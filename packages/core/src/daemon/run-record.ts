import { ExitCode } from '../errors.js';
import type { CairnOutcome } from './cairn-process.js';
import type { RunRecord, RunResult, TaskKind } from './state.js';

export interface RunTimes {
  scheduledFor?: Date;
  started: Date;
  finished: Date;
  /** The daemon told the command to stop (it was shutting down). */
  stoppedByDaemon: boolean;
}

/** What a finished `cairn backup|prune|check --json` child process means for the job's state. */
export function runRecordOf(task: TaskKind, outcome: CairnOutcome, times: RunTimes): RunRecord {
  const { result, error } = judge(task, outcome, times.stoppedByDaemon);
  const facts = task === 'backup' ? snapshotFacts(outcome.result) : {};
  return {
    task,
    result,
    ...(times.scheduledFor && { scheduledFor: times.scheduledFor.toISOString() }),
    started: times.started.toISOString(),
    finished: times.finished.toISOString(),
    durationMs: times.finished.getTime() - times.started.getTime(),
    ...(outcome.exitCode !== null && { exitCode: outcome.exitCode }),
    ...facts,
    ...(error && { error }),
  };
}

function judge(task: TaskKind, outcome: CairnOutcome, stoppedByDaemon: boolean): { result: RunResult; error?: string } {
  const { exitCode, signal } = outcome;
  if (stoppedByDaemon && exitCode !== ExitCode.ok) return { result: 'interrupted', error: 'stopped because the daemon was stopping; nothing it finished is lost' };
  if (exitCode === ExitCode.ok) return { result: 'success' };
  if (signal) return { result: 'failure', error: `cairn ${task} was killed by ${signal}` };
  if (task === 'backup' && exitCode === ExitCode.incomplete) return { result: 'warning', error: 'the snapshot was saved incomplete: parts of the source could not be read' };
  // The snapshot stands; a tap after it (retention, an `after` command) failed.
  if (task === 'backup' && typeof outcome.result?.snapshot === 'string') {
    return { result: 'warning', error: `the snapshot was saved, but ${outcome.lastProblem ?? 'a step after it failed'}` };
  }
  return { result: 'failure', error: outcome.error?.message ?? outcome.lastProblem ?? `cairn ${task} exited with code ${exitCode}` };
}

function snapshotFacts(result: Record<string, any> | undefined): Pick<RunRecord, 'snapshot' | 'bytesRead' | 'bytesAdded'> {
  if (typeof result?.snapshot !== 'string') return {};
  return { snapshot: result.snapshot, bytesRead: Number(result.bytesRead), bytesAdded: Number(result.bytesAdded) };
}
