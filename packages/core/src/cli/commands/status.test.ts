import { describe, expect, it } from 'vitest';
import { UsageError } from '../../errors.js';
import { sampleDaemonState } from '../../testing/daemon-states.js';
import { formatRun, formatSpan, formatStatus, formatTime, statusView } from './status.js';

const NOW = new Date('2030-01-15T02:10:00.000Z');
const STATE_DIR = '/var/lib/cairn';

describe('formatStatus', () => {
  it('shows a running daemon, each job and task, and the job files that did not load', () => {
    const view = statusView(sampleDaemonState(), STATE_DIR, undefined, true);
    expect(formatStatus(view, NOW, 'test-host')).toBe(
      [
        `Daemon: running, pid ${process.pid} on test-host, since 2030-01-14T08:00:00Z (18h 10m ago)`,
        'State: /var/lib/cairn/state.json',
        '',
        'Job system  (/etc/cairn/jobs/system.json → /srv/backups/system)',
        '  backup  cron 0 2 * * * (UTC)',
        '    last run      2030-01-15T02:04:12Z (5m 47s ago): success in 4m 12s, 1.2 GiB added, snapshot 4982076e05ab',
        '    next run      2030-01-16T02:00:00Z (in 23h 50m)',
        '    runs          14 success, 1 failure',
        '  prune  every 7d',
        '    last run      2030-01-14T03:00:02Z (23h 9m ago): failure in 2s, exit 11: The repository is locked by backup on other-host (pid 42)',
        '    last success  2030-01-07T03:01:30Z (7d 23h ago): success in 1m 30s',
        '    next run      2030-01-21T03:00:00Z (in 6d)',
        '    runs          1 success, 1 failure',
        '  check  cron 30 2 * * 0 (UTC)',
        '    running since 2030-01-15T02:05:00Z (5m ago), pid 4242',
        '    last run      never',
        '    last success  never',
        '',
        'Job data  (/etc/cairn/jobs/data.json → s3:backups/data)',
        '  backup  every 6h',
        '    last run      2030-01-15T00:00:30Z (2h 9m ago): warning in 30s, 4.0 KiB added, snapshot abcdef012345, exit 3: The snapshot lacks 2 unreadable ranges',
        '    last success  never',
        '    next run      2030-01-15T06:00:00Z (in 3h 50m)',
        '    runs          1 warning, 2 skipped',
        '',
        'Job files that did not load (the previous valid version of each keeps running):',
        "  2030-01-14T08:00:00Z (18h 10m ago)  /etc/cairn/jobs/broken.json: /target: must have required property 'type'",
        '',
      ].join('\n'),
    );
  });

  it('says when a daemon stopped, and that its next runs wait for it', () => {
    const view = statusView(sampleDaemonState({ stopped: '2030-01-15T02:09:00.000Z' }), STATE_DIR, 'data', false);
    const text = formatStatus(view, NOW, 'test-host');
    expect(text.split('\n')[0]).toBe(`Daemon: not running; stopped 2030-01-15T02:09:00Z (1m ago) (it ran as pid ${process.pid} on test-host since 2030-01-14T08:00:00Z (18h 10m ago))`);
    expect(text).toContain('    next run      2030-01-15T06:00:00Z (in 3h 50m), when the daemon runs\n');
    expect(text).not.toContain('Job system');
  });

  it('says when a daemon of this host ended without stopping, and that a run it had going has no known result', () => {
    const text = formatStatus(statusView(sampleDaemonState(), STATE_DIR, 'system', false), NOW, 'test-host');
    expect(text.split('\n')[0]).toBe(`Daemon: not running; pid ${process.pid} on test-host ended without stopping cleanly; its last update was 2030-01-15T02:10:00Z (now)`);
    expect(text).toContain('    was running since 2030-01-15T02:05:00Z (5m ago), pid 4242 when the daemon ended: its result is unknown\n');
  });

  it("does not guess about another host's daemon", () => {
    const text = formatStatus(statusView(sampleDaemonState(), STATE_DIR, undefined, false), NOW, 'this-host');
    expect(text.split('\n')[0]).toBe(`Daemon: pid ${process.pid} on test-host, another host: cannot tell from here whether it runs; its last update was 2030-01-15T02:10:00Z (now)`);
  });

  it('says when there are no jobs', () => {
    const state = sampleDaemonState();
    state.jobs = {};
    state.problems = [];
    expect(formatStatus(statusView(state, STATE_DIR, undefined, true), NOW, 'test-host').split('\n').slice(2)).toEqual(['', 'No jobs.', '']);
  });
});

describe('statusView', () => {
  it('gives the daemon with whether it runs, the state folder, the jobs as kept, and the problems', () => {
    const state = sampleDaemonState();
    const view = statusView(state, STATE_DIR, undefined, true);
    expect(view).toEqual({ daemon: { running: true, ...state.daemon }, stateDir: STATE_DIR, jobs: [state.jobs.system, state.jobs.data], problems: state.problems });
    expect(statusView(state, STATE_DIR, 'data', false).jobs).toEqual([state.jobs.data]);
  });

  it('refuses a job the state does not know, naming those it knows', () => {
    expect(() => statusView(sampleDaemonState(), STATE_DIR, 'laptop', true)).toThrow(UsageError);
    expect(() => statusView(sampleDaemonState(), STATE_DIR, 'laptop', true)).toThrow('The daemon\'s state in /var/lib/cairn has no job named "laptop" (jobs: system, data)');
  });
});

describe('formatting pieces', () => {
  it.each([
    [0, '0ms'],
    [850, '850ms'],
    [1_000, '1s'],
    [42_400, '42s'],
    [60_000, '1m'],
    [252_250, '4m 12s'],
    [3_600_000, '1h'],
    [3_660_000, '1h 1m'],
    [3_601_000, '1h'],
    [86_400_000 * 2 + 3_600_000 * 3 + 59_000, '2d 3h'],
  ])('formatSpan(%d) is %s', (ms, text) => {
    expect(formatSpan(ms)).toBe(text);
  });

  it('formatTime gives the UTC time to the second and how far from now', () => {
    expect(formatTime('2030-01-15T02:10:00.400Z', NOW)).toBe('2030-01-15T02:10:00Z (now)');
    expect(formatTime('2030-01-15T03:10:00.000Z', NOW)).toBe('2030-01-15T03:10:00Z (in 1h)');
    expect(formatTime('2030-01-15T01:09:30.000Z', NOW)).toBe('2030-01-15T01:09:30Z (1h ago)');
    expect(formatTime('not a time', NOW)).toBe('not a time');
  });

  it('formatRun names what a run left: result, duration, bytes, snapshot, exit code, error', () => {
    expect(formatRun({ task: 'prune', result: 'interrupted', started: '2030-01-15T02:00:00Z', finished: '2030-01-15T02:00:01Z', durationMs: 1_200, error: 'The daemon was stopped' }, NOW)).toBe(
      '2030-01-15T02:00:01Z (9m 59s ago): interrupted in 1s: The daemon was stopped',
    );
  });
});
