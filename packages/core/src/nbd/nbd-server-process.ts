import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CORE_PACKAGE_ROOT } from '../version.js';
import { spawnDetached, stopProcess, waitUntilReady, type ProcessIdentity } from './processes.js';

/*
 * The NBD server `cairn mount` and `cairn export` read a snapshot through: a `cairn serve`
 * process on a Unix socket, serving the whole disk as the default export ''. It is detached,
 * so that a mount outlives the command that made it.
 */

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
  /** A folder for the server's output. */
  stateDir: string;
}

export interface NbdServer {
  readonly socket: string;
  readonly process: ProcessIdentity;
}

/** Stops a server started by startNbdServer (by its pid, only if it is still that process). */
export async function stopNbdServer(server: NbdServer): Promise<void> {
  await stopProcess(server.process);
}

/** Starts `cairn serve`, detached (it outlives this process), and resolves once it accepts connections. */
export async function startNbdServer(request: NbdServerRequest): Promise<NbdServer> {
  const out = join(request.stateDir, 'serve.json');
  const log = join(request.stateDir, 'serve.log');
  const args = [...process.execArgv, CAIRN_BIN, 'serve', request.jobFile, request.snapshot, '--socket', request.socket, '--json', '--plugins', request.pluginsFile];
  // stdout to its own file: the JSON line saying it is ready.
  const server = await spawnDetached(process.execPath, args, { logFile: log, stdoutFile: out, env: request.env });
  await waitUntilReady('cairn serve', server, log, () => readyLine(out)).catch(async (err) => {
    await stopProcess(server.identity);
    throw err;
  });
  return { socket: request.socket, process: server.identity };
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
