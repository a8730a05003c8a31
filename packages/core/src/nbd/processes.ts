import { spawn } from 'node:child_process';
import { processStartTime } from '../system/process-start.js';
import { openSync, closeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ExternalToolError } from '../errors.js';

/*
 * The external programs `cairn mount` and `cairn export` drive (qemu-img, nbdfuse, losetup,
 * mount, FUSE file systems, the NBD server), and the processes that outlive the command:
 * started detached, found again by pid, and told apart from a later process that happens to
 * get the same pid by their start time.
 */

/** Where each program comes from on Debian, for the message when it is missing. */
const DEBIAN_PACKAGES: Record<string, string> = {
  'qemu-img': 'qemu-utils',
  nbdfuse: 'libnbd-bin',
  fusefat: 'fusefat',
  'ntfs-3g': 'ntfs-3g',
  losetup: 'mount',
  mount: 'mount',
  umount: 'mount',
  blkid: 'util-linux',
};

export interface ToolResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

function notInstalled(command: string, err: unknown): ExternalToolError {
  const where = DEBIAN_PACKAGES[command] ? ` (Debian package ${DEBIAN_PACKAGES[command]})` : '';
  return new ExternalToolError(`${command} is not installed${where}`, { cause: err });
}

/** Runs `command` to its end (argv, no shell) and collects its output; a missing program is an ExternalToolError. */
export function runTool(command: string, args: readonly string[], options: { signal?: AbortSignal } = {}): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    // An aborted signal stops the tool (SIGTERM); it then ends as killed, which the caller checks.
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(options.signal && { signal: options.signal }) });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.name !== 'AbortError') reject(e.code === 'ENOENT' ? notInstalled(command, e) : e);
    });
    child.on('close', (exitCode, signal) =>
      resolve({ exitCode: exitCode ?? 128, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') + (signal ? `killed by ${signal}` : '') }),
    );
  });
}

/** Runs `command`, which must succeed; returns its standard output. */
export async function runToolOk(command: string, args: readonly string[]): Promise<string> {
  const result = await runTool(command, args);
  if (result.exitCode !== 0) throw new ExternalToolError(`${[command, ...args].join(' ')} failed (exit ${result.exitCode}): ${(result.stderr || result.stdout).trim()}`);
  return result.stdout;
}

/** A process found again by pid: the start time (in clock ticks since boot) tells it from a later one with the same pid. */
export interface ProcessIdentity {
  pid: number;
  startTime: string;
}

/** Fields of /proc/<pid>/stat after the command name, which may itself hold spaces and parentheses. */
/** The identity of the running process `pid`, or undefined when it is gone. */
export async function processIdentity(pid: number): Promise<ProcessIdentity | undefined> {
  const startTime = processStartTime(pid);
  return startTime === undefined ? undefined : { pid, startTime };
}

/** Whether the process is still running (a zombie no longer runs: its parent just has not collected it). */
export async function isRunning(identity: ProcessIdentity): Promise<boolean> {
  const now = await processIdentity(identity.pid);
  return now?.startTime === identity.startTime;
}

/** Waits up to `timeoutMs` for the process to end; returns whether it did. */
export async function waitForExit(identity: ProcessIdentity, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (await isRunning(identity)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

/** Sends SIGTERM to the process (only if it is still the one recorded), then SIGKILL if it has not ended after `graceMs`. */
export async function stopProcess(identity: ProcessIdentity, graceMs = 10_000): Promise<void> {
  if (!(await isRunning(identity))) return;
  process.kill(identity.pid, 'SIGTERM');
  if (await waitForExit(identity, graceMs)) return;
  if (await isRunning(identity)) process.kill(identity.pid, 'SIGKILL');
  await waitForExit(identity, graceMs);
}

export interface DetachedProcess {
  identity: ProcessIdentity;
  /** Resolves with the exit code (or signal) if the process ends while this process still watches it. */
  exited: Promise<string>;
}

export interface DetachedOptions {
  /** Where its stderr (and stdout, unless `stdoutFile`) is appended; default: discarded. */
  logFile?: string;
  stdoutFile?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * Starts `command` in its own session, its output going to files (or nowhere), so that it
 * keeps running after this process ends, and the terminal's Ctrl-C does not reach it.
 */
export async function spawnDetached(command: string, args: readonly string[], options: DetachedOptions = {}): Promise<DetachedProcess> {
  const log = options.logFile === undefined ? 'ignore' : openSync(options.logFile, 'a');
  const out = options.stdoutFile === undefined ? log : openSync(options.stdoutFile, 'a');
  try {
    const child = spawn(command, args, { stdio: ['ignore', out, log], detached: true, ...(options.env && { env: options.env }) });
    const exited = new Promise<string>((resolve) => child.on('close', (code, signal) => resolve(signal ? `killed by ${signal}` : `exit ${code}`)));
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (e: NodeJS.ErrnoException) => reject(e.code === 'ENOENT' ? notInstalled(command, e) : e));
    });
    child.unref();
    const identity = await processIdentity(child.pid!);
    if (!identity) throw new ExternalToolError(`${command} ended as soon as it started: ${await exited}`);
    return { identity, exited };
  } finally {
    for (const fd of new Set([log, out])) if (typeof fd === 'number') closeSync(fd);
  }
}

/**
 * Polls `ready` every 50 ms until it returns a value, the process ends (an ExternalToolError
 * with the end of its log), or `timeoutMs` passes.
 */
export async function waitUntilReady<T>(what: string, process: DetachedProcess, logFile: string | undefined, ready: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  let ended: string | undefined;
  void process.exited.then((how) => (ended = how));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await ready();
    if (value !== undefined) return value;
    if (ended !== undefined || !(await isRunning(process.identity))) throw new ExternalToolError(`${what} ended before it was ready (${ended ?? 'gone'})${await logTail(logFile)}`);
    if (Date.now() > deadline) throw new ExternalToolError(`${what} was not ready after ${timeoutMs / 1000} s${await logTail(logFile)}`);
    await sleep(50);
  }
}

async function logTail(logFile: string | undefined): Promise<string> {
  if (logFile === undefined) return '';
  const text = (await readFile(logFile, 'utf8').catch(() => '')).trim();
  return text ? `: ${text.split('\n').slice(-5).join(' / ')}` : '';
}
