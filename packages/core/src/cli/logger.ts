import type { Logger } from '../services.js';
import type { CliIo } from './command.js';

/** Warnings and errors always, debug and info with `--verbose`; all on stderr. */
export function cliLogger(io: CliIo, verbose: boolean): Logger {
  const write = (level: string) => (message: string) => io.stderr.write(`cairn: ${level}${message}\n`);
  return {
    debug: verbose ? write('') : () => undefined,
    info: verbose ? write('') : () => undefined,
    warn: write('warning: '),
    error: write('error: '),
  };
}
