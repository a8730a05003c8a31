import { join } from 'node:path';
import { startCli, type CliOptions, type CliResult } from './cli.js';
import { PASSWORD_ENV } from './job.js';
import type { Scope } from './scope.js';

/** What `cairn serve --json` prints on one line when it is ready. */
export interface ServeReady {
  snapshot: string;
  listening: { socket: string } | { host: string; port: number };
  uri: string;
  tls: boolean;
  exports: Array<{ name: string; size: number; writable: boolean; description: string }>;
}

export interface RunningServe {
  ready: ServeReady;
  /** The Unix socket it listens on (with the default `--socket`). */
  socket: string;
  /** `nbd+unix:///NAME?socket=…` (or `nbd://host:port/NAME`) of an export; '' is the whole disk. */
  uri(name?: string): string;
  /** The process's pid (to signal it). */
  pid: number;
  /** SIGTERM, then its result. */
  stop(): Promise<CliResult>;
  result: Promise<CliResult>;
}

/**
 * Starts `cairn serve --json <job> <snapshot>` on a Unix socket in `dir` (unless `args` say
 * `--listen`), waits for its ready line, and stops it with SIGTERM when `scope` ends. The one
 * place tests start an NBD server of a snapshot: mount, boot and export tests use it too.
 */
export async function startServe(scope: Scope, job: string, snapshot: string, dir: string, args: string[] = [], options: CliOptions = {}): Promise<RunningServe> {
  const socket = join(dir, `serve-${process.hrtime.bigint()}.sock`);
  const where = args.includes('--listen') ? [] : ['--socket', socket];
  const running = startCli(['serve', '--json', job, snapshot, ...where, ...args], { ...options, env: { ...PASSWORD_ENV, ...options.env } });
  const pid = running.child.pid!;
  const stop = async () => {
    if (running.child.exitCode === null && running.child.signalCode === null) running.child.kill('SIGTERM');
    return running.result;
  };
  scope.defer(`stop cairn serve (pid ${pid})`, stop);
  const line = await firstLine(running.child.stdout!, running.result);
  let ready: ServeReady;
  try {
    ready = JSON.parse(line) as ServeReady;
  } catch {
    const result = await stop();
    throw new Error(`cairn serve did not start (exit ${result.exitCode}):\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  }
  const uri = (name = '') => ('socket' in ready.listening ? `nbd+unix:///${name}?socket=${ready.listening.socket}` : `nbd://${ready.listening.host}:${ready.listening.port}/${name}`);
  return { ready, socket, uri, pid, stop, result: running.result };
}

/** The first line a stream prints, or '' when the process ends first. */
function firstLine(stream: NodeJS.ReadableStream, ended: Promise<unknown>): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const onData = (chunk: Buffer) => {
      text += chunk.toString('utf8');
      const newline = text.indexOf('\n');
      if (newline >= 0) {
        stream.off('data', onData);
        resolve(text.slice(0, newline));
      }
    };
    stream.on('data', onData);
    void ended.then(() => resolve(text));
  });
}
