import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { HookCommandError, HookCommandTimeoutError } from '../errors.js';
import { DEFAULT_HOOK_TIMEOUT, hookCommands, hookProblems, runHookCommand, type HookCommandContext } from './hook-command.js';
import { verdictOf } from './job-commands.js';
import type { SnapshotSaved } from '../hooks.js';

describe('hook command specs', () => {
  test('argv arrays take hooks.timeout (default 15m); a command with its own timeout keeps it', () => {
    expect(DEFAULT_HOOK_TIMEOUT).toBe('15m');
    expect(hookCommands({ before: [['true'], { command: ['false'] }] }, 'before')).toEqual([
      { argv: ['true'], timeoutMs: 900_000 },
      { argv: ['false'], timeoutMs: 900_000 },
    ]);
    expect(hookCommands({ timeout: '30s', after: [['true'], { command: ['sleep', '1'], timeout: '1h' }] }, 'after')).toEqual([
      { argv: ['true'], timeoutMs: 30_000 },
      { argv: ['sleep', '1'], timeoutMs: 3_600_000 },
    ]);
    expect(hookCommands(undefined, 'onError')).toEqual([]);
  });

  test('a timeout of zero, or longer than a timer can wait, is a problem named by its path', () => {
    expect(hookProblems({ timeout: '10m', before: [{ command: ['x'], timeout: '1d' }] })).toEqual([]);
    expect(hookProblems({ timeout: '0s', onSuccess: [['x'], { command: ['x'], timeout: '25d' }] })).toEqual([
      'timeout: a timeout must be more than 0 and at most 24d, not 0s',
      'onSuccess/1/timeout: a timeout must be more than 0 and at most 24d, not 25d',
    ]);
  });
});

describe('running a hook command', () => {
  let dir: string;
  let output: PassThrough;
  let printed: string;
  const context = (): HookCommandContext => ({ phase: 'before', cwd: dir, env: { PATH: process.env.PATH, GREETING: 'hello' }, output });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-hook-command-'));
    output = new PassThrough();
    printed = '';
    output.on('data', (d: Buffer) => (printed += d.toString()));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  test('runs in its folder with the environment given, its output to the stream; exit 0 resolves', async () => {
    await runHookCommand({ argv: ['sh', '-c', 'echo "$GREETING from $(pwd)"; echo oops >&2'], timeoutMs: 10_000 }, context());
    expect(printed).toContain(`hello from ${dir}\n`);
    expect(printed).toContain('oops\n');
  });

  test('a failure names the command and its exit code or signal; a program that does not exist cannot be started', async () => {
    await expect(runHookCommand({ argv: ['sh', '-c', 'exit 7'], timeoutMs: 10_000 }, context())).rejects.toThrow('The before command `sh -c exit 7` failed (exit code 7)');
    await expect(runHookCommand({ argv: ['sh', '-c', 'kill -USR1 $$'], timeoutMs: 10_000 }, context())).rejects.toThrow(/failed \(signal SIGUSR1\)/);
    const missing = runHookCommand({ argv: ['./no-such-program'], timeoutMs: 10_000 }, context());
    await expect(missing).rejects.toBeInstanceOf(HookCommandError);
    await expect(missing).rejects.toThrow(/The before command `\.\/no-such-program` could not be started: .*ENOENT/);
  });

  test('past its timeout the whole process group is stopped, also a child that ignores SIGTERM (it gets SIGKILL)', async () => {
    const script = 'trap "" TERM; (trap "" TERM; sleep 60) & echo $! > child.pid; wait; wait';
    const promise = runHookCommand({ argv: ['sh', '-c', script], timeoutMs: 300 }, context());
    await expect(promise).rejects.toBeInstanceOf(HookCommandTimeoutError);
    await expect(promise).rejects.toThrow(/timed out after 300ms and was stopped/);
    const child = Number(await readFile(join(dir, 'child.pid'), 'utf8'));
    const stat = await readFile(`/proc/${child}/stat`, 'utf8').catch(() => '');
    // Gone, or a zombie waiting for init: not running.
    expect(stat === '' || stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z').toBe(true);
  }, 20_000);

  test('a command that exits leaving a process in the background holding its output is done; the process is left alone', async () => {
    await runHookCommand({ argv: ['sh', '-c', 'sleep 30 & echo $! > bg.pid'], timeoutMs: 10_000 }, context());
    const background = Number(await readFile(join(dir, 'bg.pid'), 'utf8'));
    expect(() => process.kill(background, 0)).not.toThrow();
    process.kill(background, 'SIGKILL');
  });
});

describe('the verdict onSuccess and onError see', () => {
  const saved = (unreadable?: unknown[]) => ({ id: 'a'.repeat(64), manifest: { ...(unreadable && { unreadable }) } }) as unknown as SnapshotSaved;

  test('a saved snapshot is a success, an incomplete one a warning', () => {
    expect(verdictOf({ ok: true }, saved())).toEqual({ result: 'success' });
    expect(verdictOf({ ok: true, tapFailures: [] }, saved([{ offset: 0, length: 512 }]))).toEqual({ result: 'warning' });
  });

  test('a failed run carries its error and the exit code it maps to; a failed after tap is exit 1', () => {
    expect(verdictOf({ ok: false, error: new HookCommandError('boom') }, undefined)).toEqual({ result: 'failure', error: 'boom', exitCode: 1 });
    expect(verdictOf({ ok: false, error: new Error('bug') }, undefined)).toEqual({ result: 'failure', error: 'bug', exitCode: 1 });
    const tapFailures = [{ hook: 'snapshotSaved', tap: 'Retention', error: new Error('EPERM') }];
    expect(verdictOf({ ok: true, tapFailures }, saved())).toEqual({ result: 'failure', error: 'Retention (snapshotSaved): EPERM', exitCode: 1 });
  });
});
