import type { Argv, ArgumentsCamelCase } from '../vendor.js';
import type { ExitCode } from '../errors.js';
import type { Core } from '../create-core.js';
import type { Output } from './output.js';
import type { Logger } from '../services.js';

/** What the CLI reads and writes: the process's streams and environment, or a test's. */
export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  env: NodeJS.ProcessEnv;
  /** Folder relative paths on the command line are resolved against. Default: the process's. */
  cwd?: string;
  /** Aborted, with the signal's name as reason, when the process receives SIGTERM or SIGINT. */
  interrupt?: AbortSignal;
}

/** Options every command takes. */
export interface GlobalOptions {
  json: boolean;
  plugins?: string;
  verbose: boolean;
}

export interface CommandContext {
  /** The core, its plugins discovered: resolve operations and services from it. */
  readonly core: Core;
  readonly output: Output;
  /** Aborted (reason: the signal's name) on SIGTERM or SIGINT; only commands with `handlesInterrupt` see it fire. */
  readonly interrupt: AbortSignal;
}

/**
 * One CLI command: its yargs declaration and what it does. A command is a file in
 * `cli/commands/`, listed once in `cli/commands/index.ts`.
 */
export interface CliCommand<A = object> {
  /** The yargs command string, with positionals: `restore <job> <snapshot>`. */
  readonly command: string;
  readonly describe: string;
  /** Declares the command's positionals and options (their types flow into `run`). */
  builder(yargs: Argv<GlobalOptions>): Argv<GlobalOptions & A>;
  /**
   * The command stops itself cleanly on `context.interrupt` (the daemon). For every other
   * command, an interrupt releases the repository locks it holds and ends it with exit code 130
   * (SIGINT) or 143 (SIGTERM).
   */
  readonly handlesInterrupt?: boolean;
  /** The logger of the core this command runs on; default: warnings and errors on stderr (all with --verbose). */
  createLogger?(io: CliIo, args: ArgumentsCamelCase<GlobalOptions & A>): Logger;
  /** Does the work and returns the exit code; errors are thrown (CairnError for the user's mistakes). */
  run(args: ArgumentsCamelCase<GlobalOptions & A>, context: CommandContext): Promise<ExitCode>;
}

/** Gives a command its argument types from its builder. */
export function defineCommand<A>(command: CliCommand<A>): CliCommand<A> {
  return command;
}

/** The `<job>` positional most commands take. */
export function withJob<T>(yargs: Argv<T>) {
  return yargs.positional('job', { type: 'string', demandOption: true, describe: 'The job file (JSON)' });
}

/** The `<snapshot>` positional. */
export function withSnapshot<T>(yargs: Argv<T>) {
  return yargs.positional('snapshot', { type: 'string', demandOption: true, describe: 'A snapshot id, a prefix of one (4+ hex digits), or latest' });
}
