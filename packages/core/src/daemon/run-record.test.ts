import { describe, expect, test } from 'vitest';
import { runRecordOf } from './run-record.js';
import { notificationOf } from './daemon-notifications.js';
import type { CairnOutcome } from './cairn-process.js';

const times = { started: new Date('2026-12-01T02:00:00Z'), finished: new Date('2026-12-01T02:00:05Z'), scheduledFor: new Date('2026-12-01T02:00:00Z'), stoppedByDaemon: false };
const saved = { snapshot: 'ab'.repeat(32), bytesRead: 100, bytesAdded: 40 };

describe('what a finished cairn process means', () => {
  test('a saved backup: success with its snapshot; the run notified on its own', () => {
    const outcome: CairnOutcome = { exitCode: 0, signal: null, result: saved };
    const record = runRecordOf('backup', outcome, times);
    expect(record).toMatchObject({ task: 'backup', result: 'success', snapshot: saved.snapshot, bytesAdded: 40, durationMs: 5000, exitCode: 0, scheduledFor: '2026-12-01T02:00:00.000Z' });
    expect(notificationOf('backup', record, outcome)).toBeUndefined();
  });

  test('exit 3, or exit 1 after the snapshot was saved, is a warning', () => {
    expect(runRecordOf('backup', { exitCode: 3, signal: null, result: saved }, times).result).toBe('warning');
    const afterTap = runRecordOf('backup', { exitCode: 1, signal: null, result: saved, lastProblem: 'error: Tap (RetentionTap): boom' }, times);
    expect(afterTap).toMatchObject({ result: 'warning', snapshot: saved.snapshot, error: expect.stringContaining('RetentionTap') });
  });

  test('a failed backup carries the error the command printed', () => {
    const outcome: CairnOutcome = { exitCode: 1, signal: null, error: { code: 'CAIRN_SOURCE', message: 'Cannot open /x' } };
    expect(runRecordOf('backup', outcome, times)).toMatchObject({ result: 'failure', error: 'Cannot open /x', exitCode: 1 });
  });

  test('the daemon speaks for what the run could not: a job file it could not load, a killed process, a stop', () => {
    const invalid: CairnOutcome = { exitCode: 2, signal: null, error: { code: 'CAIRN_JOB_FILE', message: 'The job file is invalid' } };
    expect(notificationOf('backup', runRecordOf('backup', invalid, times), invalid)).toMatchObject({ event: 'failure', operation: 'backup', error: { message: 'The job file is invalid', code: 'CAIRN_JOB_FILE', exitCode: 2 } });
    const killed: CairnOutcome = { exitCode: null, signal: 'SIGKILL' };
    expect(runRecordOf('backup', killed, times)).toMatchObject({ result: 'failure', error: 'cairn backup was killed by SIGKILL' });
    expect(notificationOf('backup', runRecordOf('backup', killed, times), killed)?.event).toBe('failure');
    const stopped: CairnOutcome = { exitCode: 143, signal: null };
    const record = runRecordOf('backup', stopped, { ...times, stoppedByDaemon: true });
    expect(record.result).toBe('interrupted');
    expect(notificationOf('backup', record, stopped)?.event).toBe('warning');
  });

  test('prune and check are reported by the daemon, success included (the job\'s `on` filters)', () => {
    const damage: CairnOutcome = { exitCode: 13, signal: null, error: { code: 'CAIRN_DAMAGE', message: '2 problems found' } };
    expect(notificationOf('check', runRecordOf('check', damage, times), damage)).toMatchObject({ event: 'failure', operation: 'check', error: { exitCode: 13 } });
    const ok: CairnOutcome = { exitCode: 0, signal: null, result: {} };
    expect(notificationOf('prune', runRecordOf('prune', ok, times), ok)).toMatchObject({ event: 'success', operation: 'prune' });
  });
});
