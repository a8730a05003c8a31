import type { Logger } from '../../services.js';
import type { DaemonLogger, LogContext, LogLevel } from '../daemon-logger.js';

export interface LogLine {
  time: string;
  level: LogLevel;
  job?: string;
  task?: string;
  message: string;
}

/** The most recent log lines of the daemon, for `GET /api/log`; listeners see each new line. */
export class LogRing {
  readonly #lines: LogLine[] = [];
  readonly #listeners = new Set<(line: LogLine) => void>();

  constructor(private readonly capacity = 1000) {}

  push(line: LogLine): void {
    this.#lines.push(line);
    if (this.#lines.length > this.capacity) this.#lines.splice(0, this.#lines.length - this.capacity);
    for (const listener of this.#listeners) listener(line);
  }

  /** The last `count` lines, oldest first. */
  last(count: number): LogLine[] {
    return this.#lines.slice(-Math.max(0, count));
  }

  /** Calls `listener` for each new line; returns the function that stops it. */
  listen(listener: (line: LogLine) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/** `logger`, with every line (debug lines only when they are printed) also kept in `ring`. */
export function teeLogger(logger: DaemonLogger, ring: LogRing, verbose: boolean): DaemonLogger {
  const log = (level: LogLevel, message: string, context: LogContext = {}) => {
    logger.log(level, message, context);
    if (level === 'debug' && !verbose) return;
    ring.push({ time: new Date().toISOString(), level, ...(context.job && { job: context.job }), ...(context.task && { task: context.task }), message });
  };
  const bound = (context: LogContext): Logger => ({
    debug: (message) => log('debug', message, context),
    info: (message) => log('info', message, context),
    warn: (message) => log('warn', message, context),
    error: (message) => log('error', message, context),
  });
  return { ...bound({}), log, with: bound };
}
