import type { Logger } from '../../services.js';
import { startCairn, type CairnOutcome } from '../cairn-process.js';
import type { JobCommand } from './dashboard.js';
import { HttpError, statusForCairnError } from './http-error.js';

/**
 * Runs `cairn <args> --json` for a job, as the daemon runs its tasks (the job text it validated,
 * its plugins), and returns what the command printed: the API answers with exactly what the
 * command line shows. A failure becomes an HttpError with the command's error code.
 */
export async function cairnJson(command: JobCommand, args: string[], logger: Logger): Promise<any> {
  const outcome = await startCairn([...args, ...command.commonArgs], { env: command.env, cwd: command.cwd, logger: problemsOnly(logger) }).done;
  if (outcome.exitCode === 0 && outcome.result !== undefined) return outcome.result;
  throw errorOf(args[0]!, outcome);
}

/** The HttpError for a command that failed. */
export function errorOf(command: string, outcome: CairnOutcome): HttpError {
  const message = outcome.error?.message ?? outcome.lastProblem ?? `cairn ${command} ended with ${outcome.signal ?? `exit code ${outcome.exitCode}`}`;
  const { status, code } = statusForCairnError(outcome.error?.code, message);
  return new HttpError(status, code, message);
}

/** A query's warnings and errors reach the daemon's log; its ordinary lines do not. */
function problemsOnly(logger: Logger): Logger {
  return { debug: () => {}, info: () => {}, warn: (m) => logger.warn(m), error: (m) => logger.debug(m) };
}
