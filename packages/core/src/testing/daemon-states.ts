import type { DaemonState, RunRecord } from '../daemon/state.js';

/**
 * A daemon state as the daemon writes it, for tests of its readers (`cairn status`, metrics):
 * job `system` (a backup that succeeded, a prune whose last run failed after an earlier
 * success, a check running now) and job `data` (a backup with a warning, never a success), and
 * one job file that did not load. Times are fixed, around 2030-01-15T02:00:00Z.
 */
export function sampleDaemonState(daemon: Partial<DaemonState['daemon']> = {}): DaemonState {
  const systemBackup: RunRecord = {
    task: 'backup',
    result: 'success',
    scheduledFor: '2030-01-15T02:00:00.000Z',
    started: '2030-01-15T02:00:00.500Z',
    finished: '2030-01-15T02:04:12.750Z',
    durationMs: 252_250,
    exitCode: 0,
    snapshot: '4982076e05ab1d2f6c9e8a7b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7',
    bytesRead: 8_589_934_592,
    bytesAdded: 1_288_490_189,
  };
  return {
    version: 1,
    daemon: { pid: process.pid, hostname: 'test-host', started: '2030-01-14T08:00:00.000Z', updated: '2030-01-15T02:10:00.000Z', ...daemon },
    jobs: {
      system: {
        name: 'system',
        file: '/etc/cairn/jobs/system.json',
        repository: '/srv/backups/system',
        knownSince: '2030-01-01T00:00:00.000Z',
        tasks: {
          backup: {
            schedule: 'cron 0 2 * * * (UTC)',
            nextRun: '2030-01-16T02:00:00.000Z',
            lastRun: systemBackup,
            lastSuccess: { ...systemBackup },
            counts: { success: 14, failure: 1 },
          },
          prune: {
            schedule: 'every 7d',
            nextRun: '2030-01-21T03:00:00.000Z',
            lastRun: {
              task: 'prune',
              result: 'failure',
              started: '2030-01-14T03:00:00.000Z',
              finished: '2030-01-14T03:00:02.000Z',
              durationMs: 2_000,
              exitCode: 11,
              error: 'The repository is locked by backup on other-host (pid 42)',
            },
            lastSuccess: {
              task: 'prune',
              result: 'success',
              started: '2030-01-07T03:00:00.000Z',
              finished: '2030-01-07T03:01:30.000Z',
              durationMs: 90_000,
              exitCode: 0,
            },
            counts: { success: 1, failure: 1 },
          },
          check: {
            schedule: 'cron 30 2 * * 0 (UTC)',
            running: { since: '2030-01-15T02:05:00.000Z', pid: 4242, scheduledFor: '2030-01-15T02:05:00.000Z' },
            counts: {},
          },
        },
      },
      data: {
        name: 'data',
        file: '/etc/cairn/jobs/data.json',
        repository: 's3:backups/data',
        knownSince: '2030-01-10T00:00:00.000Z',
        tasks: {
          backup: {
            schedule: 'every 6h',
            nextRun: '2030-01-15T06:00:00.000Z',
            lastRun: {
              task: 'backup',
              result: 'warning',
              started: '2030-01-15T00:00:00.000Z',
              finished: '2030-01-15T00:00:30.000Z',
              durationMs: 30_000,
              exitCode: 3,
              snapshot: 'abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789',
              bytesRead: 1_048_576,
              bytesAdded: 4_096,
              error: 'The snapshot lacks 2 unreadable ranges',
            },
            counts: { warning: 1, skipped: 2 },
          },
        },
      },
    },
    problems: [{ file: '/etc/cairn/jobs/broken.json', message: '/target: must have required property \'type\'', time: '2030-01-14T08:00:00.000Z' }],
  };
}
