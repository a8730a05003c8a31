import { spawn, type SpawnOptions } from 'node:child_process';

export interface RunResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions extends Omit<SpawnOptions, 'stdio' | 'timeout'> {
  /** Written to the command's standard input (which is otherwise empty). */
  input?: string | Buffer;
  /** Kill the command (SIGKILL) after this long; its result then shows the signal. */
  timeoutMs?: number;
}

interface RawResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
}

/** Every test's commands go through here: argv, no shell, output collected. */
function spawnCollect(command: string, args: readonly string[], options: RunOptions): Promise<RawResult> {
  const { input, timeoutMs, ...spawnOptions } = options;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...spawnOptions, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    if (input !== undefined) child.stdin!.end(input);
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      resolve({ exitCode, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err) });
    });
  });
}

/** Runs a command (argv, no shell) to completion and collects its output. */
export async function runCommand(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const result = await spawnCollect(command, args, options);
  return { ...result, stdout: result.stdout.toString('utf8'), stderr: result.stderr.toString('utf8') };
}

function failure(command: string, args: readonly string[], result: RawResult): Error {
  const output = result.stderr.toString('utf8').trim() || result.stdout.toString('utf8').trim();
  return new Error(`${[command, ...args].join(' ')} exited with ${result.exitCode ?? result.signal}: ${output}`);
}

/** Runs a command that must succeed; returns its standard output. */
export async function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
  const result = await spawnCollect(command, args, options);
  if (result.exitCode !== 0) throw failure(command, args, result);
  return result.stdout.toString('utf8');
}

/** Runs a command that must succeed; returns its standard output as bytes (e.g. `ntfscat`). */
export async function runForBytes(command: string, args: readonly string[], options: RunOptions = {}): Promise<Buffer> {
  const result = await spawnCollect(command, args, options);
  if (result.exitCode !== 0) throw failure(command, args, result);
  return result.stdout;
}
