import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import { ExitCode, NbdServeError, UsageError, describeSystemError } from '../../errors.js';
import { JobLoader } from '../../job/job-loader.js';
import { Environment, Logger } from '../../services.js';
import { NbdServer, type NbdListenAddress } from '../../nbd/nbd-server.js';
import { openSnapshotExports } from '../../nbd/snapshot-export.js';
import type { ExportSource } from '../../nbd/export-source.js';
import { defineCommand, withJob, withSnapshot } from '../command.js';

/** The port IANA reserved for NBD. */
const NBD_PORT = 10809;

export const serveCommand = defineCommand({
  command: 'serve <job> <snapshot>',
  describe: 'Serve a snapshot as a disk over NBD (the whole disk as the default export, each partition as p1, p2, …) until SIGTERM or SIGINT',
  builder: (yargs) =>
    withSnapshot(withJob(yargs))
      .option('socket', { type: 'string', describe: 'Listen on this Unix socket (created mode 0600, removed on exit) instead of TCP' })
      .option('listen', { type: 'string', describe: `Listen on HOST:PORT (default 127.0.0.1:${NBD_PORT}; port 0 picks a free one)` })
      .option('allow-remote', { type: 'boolean', default: false, describe: 'Let --listen take an address other than loopback (NBD is unauthenticated, and unencrypted without --tls-cert)' })
      .option('overlay', { type: 'string', describe: 'Take writes into this copy-on-write file (created if missing); the snapshot never changes. Without it the exports are read-only' })
      .option('tls-cert', { type: 'string', describe: 'PEM certificate (chain): clients must start TLS (NBD_OPT_STARTTLS) before anything else' })
      .option('tls-key', { type: 'string', describe: "PEM private key of --tls-cert" })
      .conflicts('socket', 'listen'),
  handlesInterrupt: true,
  async run(args, { core, output, interrupt }) {
    const cwd = core.get<Environment>(Environment).cwd;
    const logger = core.get<Logger>(Logger);
    const address = listenAddress(args.socket, args.listen, args.allowRemote, cwd);
    const tls = await tlsContext(args.tlsCert, args.tlsKey, cwd);
    if ('host' in address && !isLoopback(address.host)) {
      logger.warn(`serving on ${address.host}, reachable from other hosts: NBD has no authentication${tls ? '' : ', and without --tls-cert/--tls-key anyone on the network can read the disk in clear text'}`);
    }
    const job = await core.get(JobLoader).load(args.job);
    const opened = await openSnapshotExports(core, job, args.snapshot, { ...(args.overlay && { overlay: resolve(cwd, args.overlay) }) });
    const server = new NbdServer({ exports: opened.exports, logger, ...(tls && { tls }) });
    try {
      const bound = await server.listen(address);
      output.event(readyReport(opened.snapshot, bound, opened.exports, tls !== undefined), () => `cairn: serving ${opened.snapshot.slice(0, 12)} at ${uriOf(bound, tls !== undefined)}\n`);
      await untilInterrupted(interrupt);
      logger.info(`${String(interrupt.reason)} received: closing the NBD connections`);
    } finally {
      await server.close();
      await opened.close();
    }
    return ExitCode.ok;
  },
});

/** What `--json` prints on one line when the server is ready. */
function readyReport(snapshot: string, bound: NbdListenAddress, exports: readonly ExportSource[], tls: boolean) {
  return {
    snapshot,
    listening: bound,
    uri: uriOf(bound, tls),
    tls,
    exports: exports.map((e) => ({ name: e.name, size: e.size, writable: e.writable, description: e.description })),
  };
}

/** The NBD URI of the default export (the spec of NBD URIs: nbd[s]://host:port/name, nbd[s]+unix:///name?socket=path). */
function uriOf(bound: NbdListenAddress, tls: boolean): string {
  const scheme = tls ? 'nbds' : 'nbd';
  if ('socket' in bound) return `${scheme}+unix:///?socket=${bound.socket}`;
  const host = bound.host.includes(':') ? `[${bound.host}]` : bound.host;
  return `${scheme}://${host}:${bound.port}`;
}

function listenAddress(socket: string | undefined, listen: string | undefined, allowRemote: boolean, cwd: string): NbdListenAddress {
  if (socket !== undefined) {
    if (socket.trim() === '') throw new UsageError('--socket needs a path');
    return { socket: resolve(cwd, socket) };
  }
  const text = listen ?? `127.0.0.1:${NBD_PORT}`;
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text.trim());
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw new UsageError(`--listen takes HOST:PORT (e.g. 127.0.0.1:${NBD_PORT} or [::1]:${NBD_PORT}), not "${text}"`);
  const host = match[1] ?? match[2]!;
  if (host !== 'localhost' && isIP(host) === 0) throw new UsageError(`--listen must name an IP address or localhost, not "${host}"`);
  if (!allowRemote && !isLoopback(host)) {
    throw new UsageError(`--listen ${text} can be reached from other hosts, and NBD has no authentication: listen on 127.0.0.1 or a --socket, or pass --allow-remote (with --tls-cert/--tls-key)`);
  }
  return { host, port };
}

function isLoopback(host: string): boolean {
  const v4 = host.replace(/^::ffff:/i, '');
  return host === 'localhost' || host === '::1' || (isIP(v4) === 4 && v4.startsWith('127.'));
}

async function tlsContext(certFile: string | undefined, keyFile: string | undefined, cwd: string): Promise<SecureContext | undefined> {
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (!certFile || !keyFile) throw new UsageError('TLS needs both --tls-cert and --tls-key');
  const read = (file: string) =>
    readFile(resolve(cwd, file)).catch((err) => {
      throw new NbdServeError(`Cannot read ${file}: ${describeSystemError(err)}`, { cause: err });
    });
  const [cert, key] = await Promise.all([read(certFile), read(keyFile)]);
  try {
    return createSecureContext({ cert, key, minVersion: 'TLSv1.2' });
  } catch (err) {
    throw new NbdServeError(`--tls-cert/--tls-key are not a usable PEM certificate and key: ${(err as Error).message}`, { cause: err });
  }
}

function untilInterrupted(interrupt: AbortSignal): Promise<void> {
  return new Promise((resolvePromise) => {
    if (interrupt.aborted) return resolvePromise();
    interrupt.addEventListener('abort', () => resolvePromise(), { once: true });
  });
}
