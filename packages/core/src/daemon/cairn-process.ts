import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import type { Logger } from '../services.js';
import { CORE_PACKAGE_ROOT } from '../version.js';
import { mallocArenaCap } from '../pipeline/malloc-arenas.js';

/** How a `cairn` child process ended, and what it reported with `--json`. */
export interface CairnOutcome {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** The command's JSON result on stdout, when it printed one. */
  result?: Record<string, any>;
  /** The `{ error }` it printed on stderr, when it failed. */
  error?: { code?: string; message: string };
  /** Its last warning or error log line, for a run that succeeded with a warning. */
  lastProblem?: string;
}

export interface CairnProcess {
  readonly pid: number | undefined;
  readonly done: Promise<CairnOutcome>;
  /** Sends the signal to the command (it releases its locks and exits on SIGTERM). */
  signal(signal: NodeJS.Signals): void;
}

export interface CairnProcessOptions {
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** Where the command's log lines go, each tagged with the job and task. */
  logger: Logger;
  /** Receives the command's progress lines (it prints them when PROGRESS_JSON_ENV is set). */
  onProgress?(progress: ProgressLine): void;
}

/** Set to 1 in a command's environment, it prints its progress as JSON lines on stderr (see JsonProgress). */
export const PROGRESS_JSON_ENV = 'CAIRN_PROGRESS_JSON';

/** One progress line: `{"progress":{"phase":"backup","bytesDone":…,"bytesTotal":…,…}}`. */
export interface ProgressLine {
  phase: string;
  bytesDone: number;
  bytesTotal?: number;
  bytesPerSecond?: number;
  etaSeconds?: number;
}

const CAIRN_BIN = join(CORE_PACKAGE_ROOT, 'bin', 'cairn.js');

/**
 * Runs `cairn <args> --json` as a child process of this Node (with this process's Node flags).
 * The child gets its own process group, so a Ctrl-C meant for the daemon, or systemd's stop
 * signal, reaches the daemon only: the daemon decides when a running backup is told to stop.
 */
export function startCairn(args: readonly string[], options: CairnProcessOptions): CairnProcess {
  const child = spawn(process.execPath, [...process.execArgv, CAIRN_BIN, ...args, '--json'], {
    cwd: options.cwd,
    env: withMallocArenaCap(options.env),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  return { pid: child.pid, done: outcomeOf(child, options), signal: (signal) => void child.kill(signal) };
}

/**
 * The command's environment with glibc's malloc arenas capped as its memory profile says
 * (mallocArenaCap), through MALLOC_ARENA_MAX: glibc reads it when the process starts, before
 * any thread has an arena; the command's own cap comes after Node's first few threads. A bad
 * CAIRN_MEMORY is left to the command to report.
 */
export function withMallocArenaCap(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const cap = mallocArenaCap(env);
  return cap === undefined ? env : { ...env, MALLOC_ARENA_MAX: String(cap) };
}

function outcomeOf(child: ChildProcess, { logger, onProgress }: CairnProcessOptions): Promise<CairnOutcome> {
  const stdout: Buffer[] = [];
  child.stdout!.on('data', (data: Buffer) => stdout.push(data));
  const outcome: Partial<CairnOutcome> = {};
  const lines = createInterface({ input: child.stderr! });
  lines.on('line', (line) => {
    if (line.startsWith('{"progress":')) return relayProgress(line, onProgress);
    relayLine(line, outcome, logger);
  });
  const closed = new Promise<void>((resolve) => lines.once('close', resolve));
  return new Promise((resolve) => {
    child.once('error', (err) => resolve({ exitCode: null, signal: null, error: { message: `cannot start cairn: ${err.message}` } }));
    child.once('close', (exitCode, signal) => {
      void closed.then(() => resolve({ ...outcome, exitCode, signal, ...parsedResult(stdout) }));
    });
  });
}

function relayProgress(line: string, onProgress: CairnProcessOptions['onProgress']): void {
  try {
    onProgress?.(JSON.parse(line).progress as ProgressLine);
  } catch {
    // A torn line: the next one comes within a second.
  }
}

/** Passes one line of the command's stderr on to the daemon's log at its level; keeps its `{ error }`. */
function relayLine(line: string, outcome: Partial<CairnOutcome>, logger: Logger): void {
  if (line.startsWith('{"error":')) {
    try {
      outcome.error = JSON.parse(line).error;
      logger.error(outcome.error!.message);
      return;
    } catch {
      // Not the CLI's error object after all: an ordinary line.
    }
  }
  const text = line.replace(/^cairn: /, '');
  if (text.startsWith('warning: ') || text.startsWith('error: ')) {
    outcome.lastProblem = text;
    (text.startsWith('warning: ') ? logger.warn : logger.error)(text.replace(/^(warning|error): /, ''));
  } else if (text.trim() !== '') {
    logger.info(text);
  }
}

function parsedResult(stdout: Buffer[]): Pick<CairnOutcome, 'result'> {
  const text = Buffer.concat(stdout).toString('utf8').trim();
  if (!text) return {};
  try {
    return { result: JSON.parse(text) };
  } catch {
    return {};
  }
}
