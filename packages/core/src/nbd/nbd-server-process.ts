import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CORE_PACKAGE_ROOT } from '../version.js';
import { ExternalToolError } from '../errors.js';
import { processIdentity, runToolOk, spawnDetached, stopProcess, waitUntilReady, type ProcessIdentity } from './processes.js';

/*
 * The NBD server `cairn mount` and `cairn export` read a snapshot through: a `cairn serve`
 * process on a Unix socket, serving the whole disk as the default export ''.
 *
 * Until `cairn serve` is part of cairn, the snapshot is restored to an image file that
 * `qemu-nbd` serves the same way (same socket, same export); NBD_SERVER picks which one.
 */

export type NbdServerKind = 'cairn-serve' | 'qemu-nbd';
/** The one line to change when `cairn serve` arrives. */
export const NBD_SERVER: NbdServerKind = 'qemu-nbd';

const CAIRN_BIN = join(CORE_PACKAGE_ROOT, 'bin', 'cairn.js');

export interface NbdServerRequest {
  /** The job file, an absolute path. */
  jobFile: string;
  /** The snapshot's full id. */
  snapshot: string;
  pluginsFile: string;
  env: NodeJS.ProcessEnv;
  /** The Unix socket to listen on. */
  socket: string;
  /** A folder for the server's output (and, for qemu-nbd, the restored image). */
  stateDir: string;
  /** For a server that serves files only: writes the snapshot's image to `to`. */
  restoreImage(to: string): Promise<void>;
}

export interface NbdServer {
  readonly kind: NbdServerKind;
  readonly socket: string;
  readonly process: ProcessIdentity;
  /** Written by qemu-nbd's stand-in: removed when the server stops. */
  readonly image?: string;
}

/** Starts the server, detached (it outlives this process), and resolves once it accepts connections. */
export function startNbdServer(request: NbdServerRequest, kind: NbdServerKind = NBD_SERVER): Promise<NbdServer> {
  return kind === 'cairn-serve' ? startCairnServe(request) : startQemuNbd(request);
}

/** Stops a server started by startNbdServer (by its pid, only if it is still that process). */
export async function stopNbdServer(server: NbdServer): Promise<void> {
  await stopProcess(server.process);
}

async function startCairnServe(request: NbdServerRequest): Promise<NbdServer> {
  const out = join(request.stateDir, 'serve.json');
  const log = join(request.stateDir, 'serve.log');
  const args = [...process.execArgv, CAIRN_BIN, 'serve', request.jobFile, request.snapshot, '--socket', request.socket, '--json', '--plugins', request.pluginsFile];
  // stdout to its own file: the JSON line saying it is ready.
  const server = await spawnDetached(process.execPath, args, { logFile: log, stdoutFile: out, env: request.env });
  await waitUntilReady('cairn serve', server, log, () => readyLine(out)).catch(async (err) => {
    await stopProcess(server.identity);
    throw err;
  });
  return { kind: 'cairn-serve', socket: request.socket, process: server.identity };
}

/** `cairn serve --json` prints one line of JSON with `listening` when it accepts connections. */
async function readyLine(file: string): Promise<object | undefined> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const end = text.indexOf('\n');
  if (end < 0) return undefined;
  try {
    const report = JSON.parse(text.slice(0, end));
    return report && typeof report === 'object' && 'listening' in report ? report : undefined;
  } catch {
    return undefined;
  }
}

async function startQemuNbd(request: NbdServerRequest): Promise<NbdServer> {
  const image = join(request.stateDir, 'disk.img');
  await request.restoreImage(image);
  const pidFile = join(request.stateDir, 'qemu-nbd.pid');
  // --fork returns once the server listens; --persistent keeps it for the next client.
  await runToolOk('qemu-nbd', ['--read-only', '--persistent', '--shared=0', '--format=raw', `--socket=${request.socket}`, '--fork', `--pid-file=${pidFile}`, image]);
  const pid = Number((await readFile(pidFile, 'utf8')).trim());
  const identity = await processIdentity(pid);
  if (!identity) throw new ExternalToolError(`qemu-nbd (pid ${pid}) ended as soon as it started`);
  return { kind: 'qemu-nbd', socket: request.socket, process: identity, image };
}
