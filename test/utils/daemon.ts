import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Scope } from './scope.js';
import { startCli, type CliOptions, type CliResult, type RunningCli } from './cli.js';

/** A `cairn daemon` child process, with its JSON log lines as they come. */
export interface RunningDaemon extends RunningCli {
  /** The log lines printed so far, parsed (the daemon logs JSON lines when stderr is not a terminal). */
  log(): Array<{ time: string; level: string; msg: string; job?: string; task?: string }>;
  /** Sends SIGTERM and waits for the process to end. */
  stop(): Promise<CliResult>;
}

/** How long the scope lets a daemon that is still running stop by itself before it is killed. */
const STOP_GRACE_MS = 15_000;

/**
 * Starts `cairn daemon ...args`; if the test ends without stopping it, the scope sends SIGTERM
 * (so it unmounts what it mounted and ends its children) and kills it if it does not end in time.
 */
export function startDaemon(scope: Scope, args: readonly string[], options: CliOptions = {}): RunningDaemon {
  const running = startCli(['daemon', ...args], { timeoutMs: 300_000, ...options });
  let stderr = '';
  running.child.stderr!.on('data', (data: Buffer) => (stderr += data.toString('utf8')));
  scope.defer('stop the daemon', async () => {
    if (running.child.exitCode !== null || running.child.signalCode !== null) return;
    running.child.kill('SIGTERM');
    const ended = await Promise.race([running.result.then(() => true, () => true), sleep(STOP_GRACE_MS).then(() => false)]);
    if (!ended) running.child.kill('SIGKILL');
  });
  const log = () =>
    stderr
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line));
  return { ...running, log, stop: () => (running.child.kill('SIGTERM'), running.result) };
}

/** Polls `condition` every 100 ms until it returns a truthy value; throws after `timeoutMs` with `what`. */
export async function waitUntil<T>(what: string, condition: () => Promise<T> | T, timeoutMs = 60_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting until ${what}`);
    await sleep(100);
  }
}

/** The daemon's state file, or undefined before it is written. */
export async function readState(stateDir: string): Promise<any> {
  try {
    return JSON.parse(await readFile(join(stateDir, 'state.json'), 'utf8'));
  } catch {
    return undefined;
  }
}
