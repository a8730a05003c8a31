import { spawn, type ChildProcess } from 'node:child_process';
import { Writable } from 'node:stream';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { main } from '@cairn/core';

/** The workspace root (/work/main in development). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** The real `cairn` executable of the core package. */
export const CAIRN_BIN = join(REPO_ROOT, 'packages/core/bin/cairn.js');
/** The plugin folders of the workspace, by absolute path. */
export const WORKSPACE_PLUGINS = ['source-volume', 'source-files', 'codec-zstd', 'target-local'].map((p) => join(REPO_ROOT, 'packages', p));
export const FIXTURE_PLUGINS = join(REPO_ROOT, 'test/fixtures/plugins');

export interface CliOptions {
  /** Added to the environment (which is the test's, minus any CAIRN_* variables). */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Kill the process after this long; default 100 s. What it printed is kept, with a note. */
  timeoutMs?: number;
  /** Options for node itself, before the script: e.g. `['--import', hookFile]`. */
  nodeArgs?: readonly string[];
  /** A plugins.json to use instead of the installation's (passed as `--plugins FILE`). */
  plugins?: string;
  /**
   * Run on a pseudo-terminal (util-linux `script`), as a user at a terminal does. The result's
   * `stdout` is then what the terminal showed: stdout and stderr together, with `\r\n` line
   * ends. With `stdoutFile`, the command's stdout goes to that file, so the terminal shows stderr only.
   */
  terminal?: boolean | { stdoutFile: string };
}

export interface CliResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The environment a CLI run sees: the test's own, without stray CAIRN_* settings of the developer. */
export function cliEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('CAIRN_')) env[key] = value;
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  return env;
}

export interface RunningCli {
  child: ChildProcess;
  result: Promise<CliResult>;
}

/** Quotes a word for `sh`: everything inside single quotes is literal. */
function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** The program and arguments that run `cairn ...args` as the options ask. */
function commandLine(args: readonly string[], options: CliOptions): { program: string; argv: string[] } {
  const cairn = [process.execPath, ...(options.nodeArgs ?? []), CAIRN_BIN, ...(options.plugins ? ['--plugins', options.plugins] : []), ...args];
  if (!options.terminal) return { program: cairn[0]!, argv: cairn.slice(1) };
  const redirect = typeof options.terminal === 'object' ? ` > ${shellQuote(options.terminal.stdoutFile)}` : '';
  // -q: none of script's own messages; -f: flush at once; -e: pass the command's exit code on.
  return { program: 'script', argv: ['-qfec', cairn.map(shellQuote).join(' ') + redirect, '/dev/null'] };
}

/** Starts the real `cairn` executable (`node packages/core/bin/cairn.js ...args`) as a child process. */
export function startCli(args: readonly string[], options: CliOptions = {}): RunningCli {
  const { program, argv } = commandLine(args, options);
  const child = spawn(program, argv, {
    cwd: options.cwd ?? REPO_ROOT,
    env: cliEnv(options.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const timeoutMs = options.timeoutMs ?? 100_000;
  const result = new Promise<CliResult>((resolvePromise, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    let timedOut = false;
    // A hung command fails its test with what it printed, instead of hanging the suite.
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      const note = timedOut ? `\n[test] cairn ${args.join(' ')} still running after ${timeoutMs} ms; killed\n` : '';
      resolvePromise({ exitCode, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') + note });
    });
  });
  return { child, result };
}

/** Runs the real `cairn` executable to completion. */
export function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  return startCli(args, options).result;
}

/**
 * Runs the CLI in this process through `main(args, io)` from @cairn/core. Faster than a
 * child process; relative paths in `args` resolve against this process's working folder.
 */
export async function runCliInProcess(args: readonly string[], options: Pick<CliOptions, 'env'> = {}): Promise<CliResult> {
  const collect = () => {
    const chunks: Buffer[] = [];
    const stream = new Writable({
      write(chunk: Buffer | string, _encoding, callback) {
        chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
        callback();
      },
    });
    return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
  };
  const stdout = collect();
  const stderr = collect();
  const exitCode = await main([...args], { stdout: stdout.stream, stderr: stderr.stream, env: cliEnv(options.env) });
  return { exitCode, signal: null, stdout: stdout.text(), stderr: stderr.text() };
}

/** Parses a `--json` output, failing with the whole output when it is not JSON. */
export function parseJson<T = any>(result: CliResult): T {
  try {
    return JSON.parse(result.stdout) as T;
  } catch {
    throw new Error(`stdout is not JSON (exit ${result.exitCode}):\n${result.stdout}\nstderr:\n${result.stderr}`);
  }
}

/** Asserts a run succeeded, showing its output when it did not. */
export function expectSuccess(result: CliResult): void {
  expect(result.exitCode, `cairn failed:\nstdout: ${result.stdout}\nstderr: ${result.stderr}`).toBe(0);
}

/** Lines like `    at foo (file.js:1:2)`: what a stack trace looks like. */
const STACK_FRAME = /^\s+at .+(:\d+:\d+\)?|\(native\)|<anonymous>)$/m;

/**
 * Asserts a failure the way a user should see it: the exit code, a `cairn: ` message on
 * stderr matching every pattern, and no stack trace.
 */
export function expectCleanFailure(result: CliResult, exitCode: number, ...patterns: RegExp[]): void {
  const shown = `\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;
  expect(result.exitCode, `exit code${shown}`).toBe(exitCode);
  expect(result.stderr, `a message on stderr${shown}`).toMatch(/^cairn: \S/m);
  for (const pattern of patterns) expect(result.stderr, `stderr${shown}`).toMatch(pattern);
  expect(result.stderr, `no stack trace${shown}`).not.toMatch(STACK_FRAME);
  expect(result.stderr).not.toMatch(/\b(TypeError|ReferenceError|RangeError|SyntaxError):/);
}
