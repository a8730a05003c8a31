// A throwaway OpenSSH server for tests: its own host key, client key, authorized_keys and
// sshd_config in a temporary folder, listening on 127.0.0.1 and a free port. Stopped by its pid.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const SSHD = '/usr/sbin/sshd';
export const sshdAvailable = existsSync(SSHD);

export interface SshServer {
  host: string;
  port: number;
  username: string;
  /** Temporary folder holding the server's files; repositories go under `root`. */
  dir: string;
  root: string;
  /** The client's private key, in authorized_keys. */
  clientKeyPath: string;
  /** A second key the server does not accept. */
  wrongKeyPath: string;
  /** An accepted key encrypted with KEY_PASSPHRASE. */
  passphraseKeyPath: string;
  /** known_hosts with the server's real key. */
  knownHostsPath: string;
  /** known_hosts naming the server with a different key. */
  wrongKnownHostsPath: string;
  /** known_hosts holding only the server's second host key, an RSA one. */
  rsaKnownHostsPath: string;
  /** known_hosts without the server. */
  emptyKnownHostsPath: string;
  /** The ed25519 host key's fingerprint as OpenSSH prints it (`ssh-keygen -lf`), e.g. `SHA256:…`. */
  hostFingerprint: string;
  /** Everything sshd logged so far (at the `logLevel` it was started with). */
  log(): string;
  /** Resolves with the log from `from` on once it matches `pattern`; rejects if sshd exits first or after `waitMs`. */
  waitForLog(pattern: RegExp, from?: number, waitMs?: number): Promise<string>;
  /** The line known_hosts needs for this server on `port` (defaults to the server's port). */
  knownHostsLine(port?: number): string;
  /** The listening sshd's process id; each session is a child of it (the benchmark counts their CPU time). */
  pid: number;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** The passphrase of `passphraseKeyPath`. */
export const KEY_PASSPHRASE = 'open sesame, slowly';

async function keygen(path: string, passphrase = '', type = 'ed25519'): Promise<string> {
  await run('ssh-keygen', ['-q', '-t', type, '-N', passphrase, '-C', 'cairn-test', '-f', path]);
  return (await readFile(`${path}.pub`, 'utf8')).trim();
}

/**
 * The fingerprint OpenSSH shows for a public key file. Computed by ssh-keygen, not by the
 * plugin's own code, so that tests pinning it compare the plugin against OpenSSH.
 */
export async function sshKeygenFingerprint(publicKeyPath: string): Promise<string> {
  const { stdout } = await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', publicKeyPath]);
  // "256 SHA256:<base64> cairn-test (ED25519)"
  const fingerprint = stdout.split(/\s+/)[1] ?? '';
  if (!/^SHA256:[A-Za-z0-9+/]{43}$/.test(fingerprint)) throw new Error(`ssh-keygen -lf ${publicKeyPath} printed no SHA256 fingerprint: ${stdout}`);
  return fingerprint;
}

async function waitForPort(port: number, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`sshd exited with ${child.exitCode}: ${stderr()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`sshd did not listen on port ${port}: ${stderr()}`);
}

export interface SshdOptions {
  /** sshd's LogLevel; DEBUG1 logs, among much else, the host key algorithm each connection negotiated. */
  logLevel?: 'ERROR' | 'INFO' | 'VERBOSE' | 'DEBUG1';
}

export async function startSshd(options: SshdOptions = {}): Promise<SshServer> {
  if (!sshdAvailable) throw new Error(`${SSHD} is missing: install openssh-server (scripts/setup.sh does)`);
  const dir = await mkdtemp(join(tmpdir(), 'cairn-sshd-'));
  const root = join(dir, 'srv');
  await mkdir(root, { recursive: true });
  // sshd insists on its privilege separation folder.
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 }).catch(() => undefined);
  const hostKeyPath = join(dir, 'host_ed25519');
  const otherHostKeyPath = join(dir, 'other_host_ed25519');
  const clientKeyPath = join(dir, 'client_ed25519');
  const wrongKeyPath = join(dir, 'wrong_ed25519');
  const passphraseKeyPath = join(dir, 'passphrase_ed25519');
  const [hostPub, otherHostPub, clientPub, , passphrasePub] = await Promise.all([
    keygen(hostKeyPath),
    keygen(otherHostKeyPath),
    keygen(clientKeyPath),
    keygen(wrongKeyPath),
    keygen(passphraseKeyPath, KEY_PASSPHRASE),
    keygen(join(dir, 'host_rsa'), '', 'rsa'),
  ]);
  const rsaHostPub = (await readFile(join(dir, 'host_rsa.pub'), 'utf8')).trim();
  const hostFingerprint = await sshKeygenFingerprint(`${hostKeyPath}.pub`);
  await writeFile(join(dir, 'authorized_keys'), `${clientPub}\n${passphrasePub}\n`, { mode: 0o600 });
  const port = await freePort();
  const pidFile = join(dir, 'sshd.pid');
  const config = [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${hostKeyPath}`,
    `HostKey ${join(dir, 'host_rsa')}`,
    `PidFile ${pidFile}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    'UsePAM no',
    'StrictModes no',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    'Subsystem sftp internal-sftp',
    'MaxStartups 100:30:200',
    'MaxSessions 100',
    `LogLevel ${options.logLevel ?? 'ERROR'}`,
  ].join('\n');
  const configPath = join(dir, 'sshd_config');
  await writeFile(configPath, `${config}\n`);
  const child = spawn(SSHD, ['-D', '-e', '-f', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const logListeners = new Set<() => void>();
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    for (const listener of logListeners) listener();
  });
  child.once('exit', () => {
    for (const listener of logListeners) listener();
  });
  await waitForPort(port, child, () => stderr);

  const hostKeyBase = hostPub.split(/\s+/).slice(0, 2).join(' ');
  const otherKeyBase = otherHostPub.split(/\s+/).slice(0, 2).join(' ');
  const knownHostsLine = (p = port) => `[127.0.0.1]:${p} ${hostKeyBase}\n`;
  const knownHostsPath = join(dir, 'known_hosts');
  const wrongKnownHostsPath = join(dir, 'known_hosts.wrong');
  const emptyKnownHostsPath = join(dir, 'known_hosts.empty');
  await writeFile(knownHostsPath, knownHostsLine());
  await writeFile(wrongKnownHostsPath, `[127.0.0.1]:${port} ${otherKeyBase}\n`);
  const rsaKnownHostsPath = join(dir, 'known_hosts.rsa');
  await writeFile(rsaKnownHostsPath, `[127.0.0.1]:${port} ${rsaHostPub.split(/\s+/).slice(0, 2).join(' ')}\n`);
  await writeFile(emptyKnownHostsPath, `# nothing here\nexample.org ${otherKeyBase}\n`);

  return {
    host: '127.0.0.1',
    port,
    pid: child.pid!,
    username: userInfo().username,
    dir,
    root,
    clientKeyPath,
    wrongKeyPath,
    passphraseKeyPath,
    knownHostsPath,
    wrongKnownHostsPath,
    emptyKnownHostsPath,
    rsaKnownHostsPath,
    hostFingerprint,
    knownHostsLine,
    log: () => stderr,
    waitForLog(pattern, from = 0, waitMs = 10_000) {
      return new Promise((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined;
        const done = (settle: () => void) => {
          clearTimeout(timer);
          logListeners.delete(check);
          settle();
        };
        const check = () => {
          const text = stderr.slice(from);
          if (pattern.test(text)) done(() => resolve(text));
          else if (child.exitCode !== null) done(() => reject(new Error(`sshd exited before logging ${pattern}: ${text}`)));
        };
        // A bound on waiting, not a measurement: the log line normally arrives long before.
        timer = setTimeout(() => done(() => reject(new Error(`sshd did not log ${pattern} within ${waitMs} ms: ${stderr.slice(from)}`))), waitMs);
        logListeners.add(check);
        check();
      });
    },
    async stop() {
      if (child.exitCode === null && child.pid !== undefined) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        process.kill(child.pid, 'SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
