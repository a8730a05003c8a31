import { resolve } from 'node:path';
import { yargs, type Argv, type ArgumentsCamelCase } from '../vendor.js';
import { ExitCode, InterruptedError, UsageError } from '../errors.js';
import { releaseHeldLocks } from '../repository/lock.js';
import { runPendingReleases } from '../job/job-commands.js';
import { createCore, type Core } from '../create-core.js';
import { CORE_PACKAGE_ROOT, CORE_VERSION } from '../version.js';
import type { CliCommand, CliIo, GlobalOptions } from './command.js';
import { COMMANDS } from './commands/index.js';
import { Output } from './output.js';
import { cliLogger } from './logger.js';
import { ProgressBar } from './progress-bar.js';
import { JsonProgress } from './progress-json.js';
import { applyHeapLimits, memoryProfile } from '../pipeline/memory-profile.js';
import { PROGRESS_JSON_ENV } from '../daemon/cairn-process.js';

export type { CliIo } from './command.js';

/** plugins.json of the cairn installation (the workspace root). */
const DEFAULT_PLUGINS_FILE = resolve(CORE_PACKAGE_ROOT, '../../plugins.json');

const EXIT_CODES = 'Exit codes: 0 ok, 1 failed, 2 bad usage or job file, 3 snapshot saved incomplete (backup --rescue met unreadable sectors, or a files job could not read some paths), 10 no repository, 11 locked, 12 wrong password, 13 damage found, 130 and 143 stopped by SIGINT and SIGTERM (locks released).';

/** What the command line asks for: help text, or a command with its arguments. */
type Invocation = { help: string } | { command: CliCommand<any>; args: ArgumentsCamelCase<GlobalOptions> };

/** Runs the CLI; returns the exit code and never calls process.exit. */
export async function main(args: string[], io: CliIo): Promise<number> {
  let invocation: Invocation;
  try {
    invocation = await parse(args, io);
  } catch (err) {
    // The arguments did not parse, but a script that asked for JSON still gets JSON.
    if (args.includes('--json')) return new Output(io, true).error(err);
    io.stderr.write(`cairn: ${(err as Error).message}\nRun cairn --help for usage.\n`);
    return ExitCode.usage;
  }
  if ('help' in invocation) {
    io.stdout.write(invocation.help + '\n');
    return ExitCode.ok;
  }
  const { command, args: parsed } = invocation;
  const output = new Output(io, parsed.json);
  let core: Core | undefined;
  try {
    applyHeapLimits(memoryProfile(io.env, 1)); // a bad CAIRN_MEMORY is a usage error before anything starts
    core = await createCore(coreOptions(command, parsed, io));
    const interrupt = io.interrupt ?? new AbortController().signal;
    const work = command.run(parsed, { core, output, interrupt });
    return await (command.handlesInterrupt ? work : untilInterrupted(work, interrupt));
  } catch (err) {
    return output.error(err);
  } finally {
    await core?.dispose().catch(() => undefined);
  }
}

/**
 * The command's result, or, when the process is told to stop first, an InterruptedError once
 * the locks the command holds are released (the caller then ends the process: the command's
 * work is abandoned, which the repository format makes safe).
 */
async function untilInterrupted(work: Promise<ExitCode>, interrupt: AbortSignal): Promise<ExitCode> {
  if (interrupt.aborted) throw new InterruptedError(String(interrupt.reason));
  let onAbort!: () => void;
  const interrupted = new Promise<never>((_resolve, reject) => {
    onAbort = () => {
      const error = new InterruptedError(String(interrupt.reason));
      // The job's `after` commands release what its `before` commands took (a frozen file system).
      void Promise.allSettled([releaseHeldLocks(), runPendingReleases(error)]).finally(() => reject(error));
    };
    interrupt.addEventListener('abort', onAbort, { once: true });
  });
  try {
    // Work that fails once the process is told to stop (a hook command got the signal too) failed because of it.
    const failedByInterrupt = work.catch((err) => (interrupt.aborted ? interrupted : Promise.reject(err)));
    return await Promise.race([failedByInterrupt, interrupted]);
  } finally {
    interrupt.removeEventListener('abort', onAbort);
  }
}

function coreOptions(command: CliCommand<any>, args: ArgumentsCamelCase<GlobalOptions>, io: CliIo) {
  const cwd = io.cwd ?? process.cwd();
  // Drawn only for a person watching a terminal: never with --json, never when piped.
  const interactive = !args.json && Boolean(io.stderr.isTTY);
  return {
    pluginsFile: resolve(cwd, args.plugins ?? io.env.CAIRN_PLUGINS ?? DEFAULT_PLUGINS_FILE),
    logger: command.createLogger?.(io, args) ?? cliLogger(io, args.verbose),
    env: io.env,
    cwd,
    stderr: io.stderr,
    ...(interactive && { progress: { create: () => new ProgressBar(io.stderr as NodeJS.WriteStream) } }),
    // A command the daemon runs reports its progress to the daemon (the dashboard shows it).
    ...(io.env[PROGRESS_JSON_ENV] === '1' && { progress: { create: () => new JsonProgress(io.stderr) } }),
  };
}

/** Parses the command line against the command table; throws UsageError on bad usage. */
async function parse(args: string[], io: CliIo): Promise<Invocation> {
  let selected: Invocation | undefined;
  let help = '';
  let parser = globalParser(args, io);
  for (const command of COMMANDS) {
    parser = parser.command(command.command, command.describe, (y) => command.builder(y), (parsed) => {
      selected = { command, args: parsed as ArgumentsCamelCase<GlobalOptions> };
    });
  }
  await parser
    .fail((message, err) => {
      throw new UsageError(message ?? err?.message ?? 'bad usage');
    })
    .parseAsync(args, {}, (_err, _argv, output) => {
      help = output;
    });
  if (help) return { help };
  if (!selected) throw new UsageError('Name a command; see --help');
  return selected;
}

function globalParser(args: string[], io: CliIo): Argv<GlobalOptions> {
  return yargs(args)
    .scriptName('cairn')
    .usage('$0 <command> [options]\n\nSystem images of volumes and disks, deduplicated, compressed and encrypted.')
    .option('json', { type: 'boolean', default: false, describe: 'Machine-readable output on stdout' })
    .option('plugins', { type: 'string', describe: "The plugins.json to use (default: $CAIRN_PLUGINS, else the installation's)" })
    .option('verbose', { type: 'boolean', default: false, describe: 'Log debug messages' })
    // Job paths and snapshot ids are text: a prefix such as 4982076e05 must not become the
    // number 498207600000. Options declared as numbers are still parsed as numbers.
    .parserConfiguration({ 'parse-numbers': false, 'parse-positional-numbers': false })
    .demandCommand(1, 'Name a command; see --help')
    .strict()
    .exitProcess(false)
    .version(CORE_VERSION)
    .help()
    .wrap(Math.min(100, io.stdout.columns ?? 100))
    .epilogue(EXIT_CODES) as Argv<GlobalOptions>;
}
