import { CairnError, ExitCode, exitCodeOfError } from '../errors.js';
import type { TapFailure } from '../hook-runner.js';
import type { CliIo } from './command.js';

/** Writes a command's result: as JSON on stdout with `--json`, else as text. */
export class Output {
  constructor(
    private readonly io: CliIo,
    readonly json: boolean,
  ) {}

  /** The standard output itself, for a command whose output is data (`cairn dump`). */
  get stdout(): NodeJS.WritableStream {
    return this.io.stdout;
  }

  /** `text` is only computed when it is printed. */
  result(value: unknown, text: () => string): void {
    this.io.stdout.write(this.json ? JSON.stringify(value, null, 2) + '\n' : text());
  }

  /**
   * One line, at once, for a command that keeps running (`cairn serve` is ready): compact JSON
   * with --json, so that a script reading stdout line by line gets it whole.
   */
  event(value: unknown, text: () => string): void {
    this.io.stdout.write(this.json ? JSON.stringify(value) + '\n' : text());
  }

  /** Reports an error the way the user should see it, and returns its exit code. */
  error(err: unknown): ExitCode {
    if (err instanceof CairnError) {
      this.io.stderr.write(this.json ? JSON.stringify({ error: { code: err.code, message: err.message } }) + '\n' : `cairn: ${err.message}\n`);
      return exitCodeOfError(err);
    }
    // Not raised on purpose: a bug or an unexpected system error. Say so, with the details.
    const error = err as NodeJS.ErrnoException;
    this.io.stderr.write(
      this.json
        ? JSON.stringify({ error: { code: error?.code ?? 'CAIRN_INTERNAL', message: String(error?.message ?? err) } }) + '\n'
        : `cairn: ${error?.message ?? err}\n${this.io.env.CAIRN_DEBUG ? `${error?.stack}\n` : ''}`,
    );
    return ExitCode.failed;
  }
}

/** A run whose result stands but some of whose `after` taps failed (they were logged) exits 1. */
export function exitCodeOf(tapFailures: readonly TapFailure[]): ExitCode {
  return tapFailures.length > 0 ? ExitCode.failed : ExitCode.ok;
}
