import { spawn } from 'node:child_process';
import { processStartTime } from '../system/process-start.js';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DaemonStateError } from '../errors.js';
import { sampleDaemonState } from '../testing/daemon-states.js';
import { daemonIsRunning, readDaemonState, writeDaemonState } from './state-file.js';
import { STATE_FILE } from './state.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-state-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('readDaemonState and writeDaemonState', () => {
  it('reads back what was written, in a folder it creates with mode 0700 and a file of mode 0600', async () => {
    const stateDir = join(dir, 'nested', 'cairn');
    const state = sampleDaemonState();
    await writeDaemonState(stateDir, state);
    expect(await readDaemonState(stateDir)).toEqual(state);
    expect((await stat(stateDir)).mode & 0o777).toBe(0o700);
    expect((await stat(join(stateDir, STATE_FILE))).mode & 0o777).toBe(0o600);
    expect(await readdir(stateDir)).toEqual([STATE_FILE]);
  });

  it('gives undefined when there is no state file', async () => {
    expect(await readDaemonState(dir)).toBeUndefined();
    expect(await readDaemonState(join(dir, 'missing'))).toBeUndefined();
  });

  it('replaces the file whole: a reader never sees part of it', async () => {
    const big = sampleDaemonState();
    // A state of some hundred kilobytes, so a non-atomic write would be seen half done.
    for (let i = 0; i < 400; i++) big.jobs[`job-${i}`] = { ...big.jobs.system!, name: `job-${i}` };
    const small = sampleDaemonState();
    await writeDaemonState(dir, small);
    let reads = 0;
    let writing = true;
    const reader = (async () => {
      while (writing) {
        const state = await readDaemonState(dir);
        expect([2, 402]).toContain(Object.keys(state!.jobs).length);
        reads++;
      }
    })();
    for (let i = 0; i < 30; i++) await writeDaemonState(dir, i % 2 ? small : big);
    writing = false;
    await reader;
    expect(reads).toBeGreaterThan(0);
    expect(await readdir(dir)).toEqual([STATE_FILE]);
  });

  it.each([
    ['not JSON', '{"version": 1, "daemon": ', /is not valid JSON/],
    ['an array', '[]', /does not hold a JSON object/],
    ['another file', '{"name": "x"}', /has no version 1/],
    ['a newer version', '{"version": 2}', /has version 2: it was written by a newer cairn/],
    ['no daemon', '{"version": 1, "jobs": {}, "problems": []}', /lacks the daemon's pid/],
    ['no jobs', JSON.stringify({ ...sampleDaemonState(), jobs: undefined }), /lacks its jobs/],
    ['no problems', JSON.stringify({ ...sampleDaemonState(), problems: undefined }), /lacks its list of problems/],
  ])('refuses a state file with %s, naming the file', async (_what, text, message) => {
    await writeFile(join(dir, STATE_FILE), text);
    const error = await readDaemonState(dir).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(DaemonStateError);
    expect((error as DaemonStateError).code).toBe('CAIRN_DAEMON_STATE');
    expect((error as Error).message).toContain(join(dir, STATE_FILE));
    expect((error as Error).message).toMatch(message);
  });

  it('says why a state file cannot be read', async () => {
    // A folder where the file should be: reading it fails with EISDIR (root could read a file of any mode).
    await mkdir(join(dir, STATE_FILE));
    await expect(readDaemonState(dir)).rejects.toThrow(/Cannot read the daemon's state file .*state\.json: EISDIR/);
  });

  it('leaves no temporary file when the write fails', async () => {
    await mkdir(join(dir, STATE_FILE));
    await expect(writeDaemonState(dir, sampleDaemonState())).rejects.toThrow();
    expect(await readdir(dir)).toEqual([STATE_FILE]);
  });

  it('writes JSON a person can read', async () => {
    await writeDaemonState(dir, sampleDaemonState());
    const text = await readFile(join(dir, STATE_FILE), 'utf8');
    expect(text).toMatch(/^\{\n {2}"version": 1,\n/);
    expect(text.endsWith('}\n')).toBe(true);
  });
});

describe('daemonIsRunning', () => {
  it('is true for a live process of this host that did not stop', () => {
    expect(daemonIsRunning(sampleDaemonState({ pid: process.pid, hostname: hostname() }))).toBe(true);
  });

  it('is false once the daemon recorded that it stopped', () => {
    expect(daemonIsRunning(sampleDaemonState({ pid: process.pid, hostname: hostname(), stopped: '2030-01-15T03:00:00.000Z' }))).toBe(false);
  });

  it("is false for another host's daemon, which cannot be checked from here", () => {
    expect(daemonIsRunning(sampleDaemonState({ pid: process.pid, hostname: `not-${hostname()}` }))).toBe(false);
  });

  it('is false when the pid is gone (a daemon killed without stopping cleanly)', async () => {
    const child = spawn(process.execPath, ['-e', '']);
    const pid = child.pid!;
    await new Promise((resolve) => child.on('exit', resolve));
    expect(daemonIsRunning(sampleDaemonState({ pid, hostname: hostname() }))).toBe(false);
  });

  it('is false when the pid now belongs to another process (it started at another time than the daemon)', () => {
    const startTime = processStartTime(process.pid)!;
    expect(daemonIsRunning(sampleDaemonState({ pid: process.pid, startTime, hostname: hostname() }))).toBe(true);
    expect(daemonIsRunning(sampleDaemonState({ pid: process.pid, startTime: String(Number(startTime) - 1), hostname: hostname() }))).toBe(false);
  });

  it('is false for a pid that is not a process id', () => {
    expect(daemonIsRunning(sampleDaemonState({ pid: 0, hostname: hostname() }))).toBe(false);
    expect(daemonIsRunning(sampleDaemonState({ pid: -1, hostname: hostname() }))).toBe(false);
  });
});
