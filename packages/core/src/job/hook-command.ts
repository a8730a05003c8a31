import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { HookCommandError, HookCommandTimeoutError } from '../errors.js';
import { formatDurationMs, parseDurationMs } from '../daemon/duration.js';

/** A job file's hook command: an argv array, or one with its own timeout. */
export type HookCommandSpec = string[] | { command: string[]; timeout?: string };

/** The job file's `hooks`. */
export interface JobHooks {
  /** Timeout of every command that sets none; default DEFAULT_HOOK_TIMEOUT. */
  timeout?: string;
  before?: HookCommandSpec[];
  after?: HookCommandSpec[];
  onSuccess?: HookCommandSpec[];
  onError?: HookCommandSpec[];
}

export type HookPhase = 'before' | 'after' | 'onSuccess' | 'onError';
export const HOOK_PHASES: readonly HookPhase[] = ['before', 'after', 'onSuccess', 'onError'];

/** Long enough for a database dump or an LVM snapshot; short enough that a hung command does not stall a schedule for days. */
export const DEFAULT_HOOK_TIMEOUT = '15m';
/** setTimeout cannot wait longer (2^31 - 1 ms, about 24.8 days). */
const MAX_TIMEOUT_MS = 24 * 86_400_000;
/** How long a command that timed out gets between SIGTERM and SIGKILL. */
export const KILL_GRACE_MS = 5_000;
/** How long output is still copied after a command exited, while a process it left in the background holds its pipes. */
const OUTPUT_DRAIN_MS = 1_000;
/** Signals that end cairn; a running command's process group gets them too (it has its own group, so a terminal's Ctrl-C does not reach it). */
const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

export interface HookCommand {
  argv: string[];
  timeoutMs: number;
}

/** The commands of a phase with their timeouts resolved; the job file was validated (hookProblems is empty). */
export function hookCommands(hooks: JobHooks | undefined, phase: HookPhase): HookCommand[] {
  const fallback = parseDurationMs(hooks?.timeout ?? DEFAULT_HOOK_TIMEOUT);
  return (hooks?.[phase] ?? []).map((spec) =>
    Array.isArray(spec) ? { argv: spec, timeoutMs: fallback } : { argv: spec.command, timeoutMs: spec.timeout === undefined ? fallback : parseDurationMs(spec.timeout) },
  );
}

/** What the schema cannot check: timeouts that are not zero and that a timer can wait for. As `path: message`. */
export function hookProblems(hooks: JobHooks): string[] {
  const problems: string[] = [];
  const check = (path: string, text: string | undefined) => {
    if (text === undefined) return;
    try {
      const ms = parseDurationMs(text);
      if (ms === 0 || ms > MAX_TIMEOUT_MS) problems.push(`${path}: a timeout must be more than 0 and at most ${formatDurationMs(MAX_TIMEOUT_MS)}, not ${text}`);
    } catch (err) {
      problems.push(`${path}: ${(err as Error).message}`);
    }
  };
  check('timeout', hooks.timeout);
  for (const phase of HOOK_PHASES) {
    hooks[phase]?.forEach((spec, i) => check(`${phase}/${i}/timeout`, Array.isArray(spec) ? undefined : spec.timeout));
  }
  return problems;
}

export interface HookCommandContext {
  /** Which list the command belongs to, for messages. */
  phase: HookPhase;
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Where the command's stdout and stderr go. */
  output: NodeJS.WritableStream;
}

/**
 * Runs a command (argv, no shell) in a process group of its own, so that when it times out
 * the whole group, with whatever it started, is stopped: SIGTERM, then SIGKILL after
 * KILL_GRACE_MS. Resolves when it exited 0; rejects with HookCommandError otherwise, or
 * HookCommandTimeoutError.
 */
export function runHookCommand(command: HookCommand, context: HookCommandContext): Promise<void> {
  const { argv, timeoutMs } = command;
  const shown = `The ${context.phase} command \`${argv.join(' ')}\``;
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: context.cwd, env: context.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    child.stdout!.pipe(context.output, { end: false });
    child.stderr!.pipe(context.output, { end: false });
    const forwarding = forwardSignals(child);
    let stopping: Promise<void> | undefined;
    const timer = setTimeout(() => (stopping = stopGroup(child.pid!)), timeoutMs);
    const settle = (error?: Error) => {
      clearTimeout(timer);
      forwarding.dispose();
      if (error) reject(error);
      else resolve();
    };
    child.on('error', (err) => settle(new HookCommandError(`${shown} could not be started: ${err.message}`, { cause: err })));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      void Promise.all([stopping, outputEnded(child)]).then(() => {
        if (stopping) settle(new HookCommandTimeoutError(`${shown} timed out after ${formatDurationMs(timeoutMs)} and was stopped, with every process it started`));
        else if (code === 0) settle();
        else settle(new HookCommandError(`${shown} failed (${signal ? `signal ${signal}` : `exit code ${code}`})`));
      });
    });
  });
}

/** Waits for the command's output pipes to close; a process it left running may hold them, so after a moment they are let go. */
async function outputEnded(child: ChildProcess): Promise<void> {
  const closed = new Promise<boolean>((resolve) => child.once('close', () => resolve(true)));
  if (await Promise.race([closed, sleep(OUTPUT_DRAIN_MS, false)])) return;
  child.stdout!.destroy();
  child.stderr!.destroy();
}

/** SIGTERM to every process of the group, SIGKILL to those still there after KILL_GRACE_MS; resolves when none is left. */
async function stopGroup(pgid: number): Promise<void> {
  signalGroup(pgid, 'SIGTERM');
  if (await groupGone(pgid, KILL_GRACE_MS)) return;
  signalGroup(pgid, 'SIGKILL');
  await groupGone(pgid, KILL_GRACE_MS);
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: the group is gone already.
  }
}

async function groupGone(pgid: number, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while ((await liveMembers(pgid)) > 0) {
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
  return true;
}

/**
 * How many processes of the group are still running. Zombies do not count: a process whose
 * parent died waits to be reaped by init, which some containers' init does late.
 */
async function liveMembers(pgid: number): Promise<number> {
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return groupSignalable(pgid) ? 1 : 0;
  }
  let live = 0;
  for (const entry of entries) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
    const [state, , group] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(group) === pgid && state !== 'Z') live++;
  }
  return live;
}

function groupSignalable(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * While the command runs, a signal that ends cairn also goes to the command's group: it would
 * otherwise outlive cairn. The signal then takes its usual course: cairn ends by it, unless
 * something else in cairn listens for it.
 */
function forwardSignals(child: ChildProcess): { dispose(): void } {
  const listeners = new Map<NodeJS.Signals, () => void>();
  const dispose = () => {
    for (const [signal, listener] of listeners) process.removeListener(signal, listener);
    listeners.clear();
  };
  for (const signal of FORWARDED_SIGNALS) {
    const listener = () => {
      if (child.pid !== undefined) signalGroup(child.pid, signal);
      dispose();
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    listeners.set(signal, listener);
    process.on(signal, listener);
  }
  return { dispose };
}
