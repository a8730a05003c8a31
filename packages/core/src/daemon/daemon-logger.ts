import type { Logger } from '../services.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Which job and task a log line is about. */
export interface LogContext {
  job?: string;
  task?: string;
}

/** A logger whose lines can name the job and task they are about. */
export interface DaemonLogger extends Logger {
  log(level: LogLevel, message: string, context?: LogContext): void;
  /** The same logger, every line tagged with `context`. */
  with(context: LogContext): Logger;
}

/**
 * The daemon's log on `stream`: one JSON object per line (`time`, `level`, `msg`, `job`, `task`)
 * when `json`, which is what journald and log shippers take when the output is not a terminal;
 * else readable lines. Debug lines only when `verbose`.
 */
export function daemonLogger(stream: NodeJS.WritableStream, options: { json: boolean; verbose: boolean }): DaemonLogger {
  const log = (level: LogLevel, message: string, context: LogContext = {}) => {
    if (level === 'debug' && !options.verbose) return;
    const time = new Date().toISOString();
    stream.write(options.json ? JSON.stringify({ time, level, msg: message, ...context }) + '\n' : readableLine(time, level, message, context));
  };
  const logger = (context: LogContext): Logger => ({
    debug: (message) => log('debug', message, context),
    info: (message) => log('info', message, context),
    warn: (message) => log('warn', message, context),
    error: (message) => log('error', message, context),
  });
  return { ...logger({}), log, with: logger };
}

function readableLine(time: string, level: LogLevel, message: string, context: LogContext): string {
  const about = context.job ? `${context.job}${context.task ? `/${context.task}` : ''}: ` : '';
  return `${time.slice(0, 19).replace('T', ' ')} ${level.padEnd(5)} ${about}${message}\n`;
}
