import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, expect, onTestFinished, test } from 'vitest';
import { writeDaemonState, type DaemonState, type StatusView } from '@cairn/core';
import { sampleDaemonState } from '@cairn/core/testing';
import { expectCleanFailure, expectSuccess, parseJson, runCli, useTempDir } from './utils/index.js';

/*
 * `cairn status` through the real CLI, against state files written as the daemon writes them
 * (`writeDaemonState`). A daemon that "runs" is a live process of this host whose pid the state
 * names; the daemon's own end-to-end test covers status against a live daemon.
 */

/** A live process standing in for a running daemon: its pid is alive until the test ends. */
function liveProcess(): ChildProcess {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  onTestFinished(() => {
    child.kill('SIGKILL');
  });
  return child;
}

/** A state of a daemon of this host, running (a live pid) unless `daemon` says otherwise. */
function stateOfThisHost(daemon: Partial<DaemonState['daemon']> = {}): DaemonState {
  return sampleDaemonState({ pid: liveProcess().pid!, hostname: hostname(), ...daemon });
}

describe('cairn status', () => {
  test('shows a running daemon, its jobs and tasks, and the job files that did not load', async () => {
    const dir = await useTempDir('cairn-status-');
    const state = stateOfThisHost();
    await writeDaemonState(dir, state);
    const result = await runCli(['status', '--state-dir', dir]);
    expectSuccess(result);
    const lines = result.stdout.split('\n');
    expect(lines[0]).toMatch(new RegExp(`^Daemon: running, pid ${state.daemon.pid} on ${hostname()}, since 2030-01-14T08:00:00Z \\(`));
    expect(lines[1]).toBe(`State: ${join(dir, 'state.json')}`);
    expect(result.stdout).toContain('Job system  (/etc/cairn/jobs/system.json → /srv/backups/system)\n  backup  cron 0 2 * * * (UTC)\n');
    expect(result.stdout).toMatch(/ {4}last run {6}2030-01-15T02:04:12Z \([^)]+\): success in 4m 12s, 1\.2 GiB added, snapshot 4982076e05ab\n/);
    expect(result.stdout).toMatch(/ {4}last run {6}2030-01-14T03:00:02Z \([^)]+\): failure in 2s, exit 11: The repository is locked by backup on other-host \(pid 42\)\n {4}last success {2}2030-01-07T03:01:30Z/);
    expect(result.stdout).toMatch(/ {4}running since 2030-01-15T02:05:00Z \([^)]+\), pid 4242\n/);
    expect(result.stdout).toContain('Job data  (/etc/cairn/jobs/data.json → s3:backups/data)');
    expect(result.stdout).toContain("  /etc/cairn/jobs/broken.json: /target: must have required property 'type'");
    expect(result.stderr).toBe('');
  });

  test('--json gives the daemon with whether it runs, the state folder, the jobs as kept and the problems', async () => {
    const dir = await useTempDir('cairn-status-');
    const state = stateOfThisHost();
    await writeDaemonState(dir, state);
    const all = parseJson<StatusView>(await runCli(['status', '--state-dir', dir, '--json']));
    expect(all).toEqual({ daemon: { running: true, ...state.daemon }, stateDir: dir, jobs: [state.jobs.system, state.jobs.data], problems: state.problems });
    const one = parseJson<StatusView>(await runCli(['status', 'data', '--state-dir', dir, '--json']));
    expect(one.jobs).toEqual([state.jobs.data]);
    expect(one.problems).toEqual(state.problems);
  });

  test('finds the state in $CAIRN_STATE_DIR, and resolves a relative --state-dir against the working folder', async () => {
    const dir = await useTempDir('cairn-status-');
    await writeDaemonState(join(dir, 'state'), stateOfThisHost());
    expect(parseJson<StatusView>(await runCli(['status', '--json'], { env: { CAIRN_STATE_DIR: join(dir, 'state') } })).stateDir).toBe(join(dir, 'state'));
    expect(parseJson<StatusView>(await runCli(['status', '--json', '--state-dir', 'state'], { cwd: dir })).stateDir).toBe(join(dir, 'state'));
  });

  test('says when the daemon stopped, or ended without stopping', async () => {
    const dir = await useTempDir('cairn-status-');
    const stopped = stateOfThisHost({ stopped: '2030-01-15T03:00:00.000Z' });
    await writeDaemonState(dir, stopped);
    const result = await runCli(['status', 'system', '--state-dir', dir]);
    expectSuccess(result);
    expect(result.stdout.split('\n')[0]).toMatch(/^Daemon: not running; stopped 2030-01-15T03:00:00Z \(/);
    expect(result.stdout).toMatch(/next run {6}2030-01-16T02:00:00Z \([^)]+\), when the daemon runs\n/);
    expect(result.stdout).not.toContain('Job data');

    // A daemon killed without stopping: its pid is gone.
    const gone = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => gone.on('exit', resolve));
    await writeDaemonState(dir, sampleDaemonState({ pid: gone.pid!, hostname: hostname() }));
    const crashed = await runCli(['status', '--state-dir', dir]);
    expect(crashed.stdout.split('\n')[0]).toMatch(new RegExp(`^Daemon: not running; pid ${gone.pid} on ${hostname()} ended without stopping cleanly`));
    expect(crashed.stdout).toMatch(/was running since 2030-01-15T02:05:00Z \([^)]+\), pid 4242 when the daemon ended: its result is unknown/);
    expect(parseJson<StatusView>(await runCli(['status', '--state-dir', dir, '--json'])).daemon.running).toBe(false);
  });

  test('a job the state does not know is a usage error (exit 2) naming the jobs it knows', async () => {
    const dir = await useTempDir('cairn-status-');
    await writeDaemonState(dir, stateOfThisHost());
    expectCleanFailure(await runCli(['status', 'laptop', '--state-dir', dir]), 2, /has no job named "laptop" \(jobs: system, data\)/);
    const json = await runCli(['status', 'laptop', '--state-dir', dir, '--json']);
    expect(json.exitCode).toBe(2);
    expect(JSON.parse(json.stderr).error.code).toBe('CAIRN_USAGE');
  });

  test('no state file is an error (exit 1) saying that no daemon has kept state there', async () => {
    const dir = await useTempDir('cairn-status-');
    expectCleanFailure(await runCli(['status', '--state-dir', dir]), 1, new RegExp(`No daemon has kept state in ${dir} \\(no state\\.json there\\)`));
    const json = await runCli(['status', '--state-dir', join(dir, 'missing'), '--json']);
    expect(json.exitCode).toBe(1);
    expect(json.stdout).toBe('');
    expect(JSON.parse(json.stderr).error.code).toBe('CAIRN_DAEMON_STATE_NOT_FOUND');
  });

  test('a corrupt or newer state file is an error (exit 1) naming the file', async () => {
    const dir = await useTempDir('cairn-status-');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'state.json'), '{"version": 1, "daemon": {');
    expectCleanFailure(await runCli(['status', '--state-dir', dir]), 1, /state file .*state\.json is not valid JSON/);
    await writeFile(join(dir, 'state.json'), '{"version": 2}');
    const json = await runCli(['status', '--state-dir', dir, '--json']);
    expect(json.exitCode).toBe(1);
    expect(JSON.parse(json.stderr).error).toEqual({ code: 'CAIRN_DAEMON_STATE', message: expect.stringMatching(/written by a newer cairn/) });
  });

  test('reads the state while it is being replaced, as it is while the daemon runs', async () => {
    const dir = await useTempDir('cairn-status-');
    const state = stateOfThisHost();
    await writeDaemonState(dir, state);
    let writing = true;
    let writes = 0;
    const writer = (async () => {
      while (writing) {
        state.daemon.updated = new Date(Date.parse('2030-01-15T02:10:00Z') + ++writes * 1000).toISOString();
        await writeDaemonState(dir, state);
      }
    })();
    try {
      const runs = await Promise.all(Array.from({ length: 6 }, () => runCli(['status', '--state-dir', dir, '--json'])));
      for (const run of runs) {
        expectSuccess(run);
        expect(parseJson<StatusView>(run).jobs.map((job) => job.name)).toEqual(['system', 'data']);
      }
    } finally {
      writing = false;
      await writer;
    }
    expect(writes).toBeGreaterThan(1);
  });
});
