import type { Argv, ArgumentsCamelCase } from '../vendor.js';
import type { ExitCode } from '../errors.js';
import type { Core } from '../create-core.js';
import type { Output } from './output.js';

/** What the CLI reads and writes: the process's streams and environment, or a test's. */
export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  env: NodeJS.ProcessEnv;
  /** Folder relative paths on the command line are resolved against. Default: the process's. */
  cwd?: string;
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
