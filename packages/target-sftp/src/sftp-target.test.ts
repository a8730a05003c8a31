import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TargetError, type SecretRef } from '@cairn/core';
import { describeTargetConformance } from '@cairn/core/testing';
// The harness is this package's `./testing` export, shared with the CLI tests in test/sftp.
import { KEY_PASSPHRASE, startSshd, startTcpProxy, type SshServer, type TcpProxy } from './testing/index.js';
import { tempName } from '@cairn/core';
import { UNACKNOWLEDGED_BYTES } from './object-writer.js';
import { createSftpTarget, type SftpTarget, type SftpTargetSettings } from './sftp-target.js';

let server: SshServer | undefined;
let starting: Promise<SshServer> | undefined;
/** Started once, on first use, for all suites of this file. */
function sshd(): Promise<SshServer> {
  // DEBUG1: sshd then logs the host key algorithm each connection negotiated.
  starting ??= startSshd({ logLevel: 'DEBUG1' }).then((s) => (server = s));
  return starting;
}
afterAll(async () => {
  await server?.stop();
});

const context = (secrets: Record<string, string> = {}) => ({
  baseDir: '/',
  readSecret: async (ref: SecretRef) => {
    if ('env' in ref && secrets[ref.env] !== undefined) return secrets[ref.env]!;
    throw new Error(`no secret ${JSON.stringify(ref)}`);
  },
});

async function makeTarget(overrides: Partial<SftpTargetSettings> = {}, secrets?: Record<string, string>): Promise<{ target: SftpTarget; folder: string }> {
  const s = await sshd();
  const folder = join(s.root, `repo-${randomBytes(6).toString('hex')}`);
  const settings: SftpTargetSettings = {
    type: 'sftp',
    host: s.host,
    port: s.port,
    username: s.username,
    path: folder,
    privateKeyPath: s.clientKeyPath,
    knownHostsPath: s.knownHostsPath,
    agent: false,
    ...overrides,
  };
  return { target: await createSftpTarget(settings, context(secrets)), folder };
}

/** A known_hosts file naming the server's key for the proxy's port. */
async function knownHostsFor(proxy: TcpProxy): Promise<string> {
  const path = join(server!.dir, `known_hosts-proxy-${proxy.port}`);
  await writeFile(path, server!.knownHostsLine(proxy.port));
  return path;
}

/** Runs `use` with a target whose connections go through a TCP proxy (to count, cut or stall them); disposes of both after. */
async function withProxiedTarget(
  overrides: Partial<SftpTargetSettings>,
  use: (context: { target: SftpTarget; folder: string; proxy: TcpProxy }) => Promise<void>,
): Promise<void> {
  const proxy = await startTcpProxy(server!.port);
  try {
    const { target, folder } = await makeTarget({ port: proxy.port, knownHostsPath: await knownHostsFor(proxy), ...overrides });
    try {
      await use({ target, folder, proxy });
    } finally {
      await target.dispose();
    }
  } finally {
    await proxy.close();
  }
}

/** The temp files of unfinished uploads anywhere under `folder`. */
async function tempFilesIn(folder: string): Promise<string[]> {
  return (await readdir(folder, { recursive: true })).filter((path) => path.split('/').pop()!.startsWith('.tmp-'));
}

describeTargetConformance('SftpTarget (OpenSSH sshd)', async () => {
  const { target, folder } = await makeTarget();
  return { target, cleanup: () => rm(folder, { recursive: true, force: true }) };
});

describe('SftpTarget', () => {
  beforeAll(async () => {
    await sshd();
  });

  it('writes files 0600 in folders 0700 it creates, and leaves no temp file', async () => {
    const { target, folder } = await makeTarget();
    try {
      await target.put('data/ab/abcd', Buffer.from('pack'));
      expect((await stat(join(folder, 'data/ab/abcd'))).mode & 0o777).toBe(0o600);
      for (const sub of ['', 'data', 'data/ab']) expect((await stat(join(folder, sub))).mode & 0o777, sub).toBe(0o700);
      expect(await readdir(join(folder, 'data/ab'))).toEqual(['abcd']);
      expect(target.location).toBe(`sftp://${server!.username}@127.0.0.1:${server!.port}${folder}`);
    } finally {
      await target.dispose();
    }
  });

  it('does not list temp files left by an interrupted upload', async () => {
    const { target, folder } = await makeTarget();
    try {
      await target.put('data/ab/abcd', Buffer.from('complete'));
      await writeFile(join(folder, 'data/ab/.tmp-0123456789abcdef'), 'half a pack');
      const keys = [];
      for await (const info of target.list('')) keys.push(info.key);
      expect(keys).toEqual(['data/ab/abcd']);
    } finally {
      await target.dispose();
    }
  });

  it('names temp files after this host and process, and removeLeftovers removes those older than the cutoff or of a dead process of this host', async () => {
    const { target, folder } = await makeTarget();
    try {
      await target.put('data/ab/abcd', Buffer.from('complete'));
      await target.put('index/0123', Buffer.from('index'));
      // The CLI test in test/sftp SIGKILLs a backup and finds these names, with its pid, left on the server.
      expect(tempName()).toMatch(new RegExp(`^\\.tmp-[a-z0-9_]+-${process.pid}-[0-9a-f]{16}$`));
      expect(tempName()).not.toBe(tempName());

      const dead = spawn(process.execPath, ['-e', '']);
      await new Promise((resolve) => dead.once('exit', resolve));
      const hour = 3_600_000;
      const old = new Date(Date.now() - 2 * hour);
      const files: Array<{ path: string; bytes: number; old?: boolean; goes: boolean }> = [
        // Before host and pid were in the name: removed only once old.
        { path: 'data/ab/.tmp-0123456789abcdef', bytes: 11, old: true, goes: true },
        { path: 'data/ab/.tmp-fedcba9876543210', bytes: 12, goes: false },
        // A dead writer of this host: at once, in any folder, the repository's top one too.
        { path: tempName(dead.pid!), bytes: 13, goes: true },
        { path: `index/${tempName(dead.pid!)}`, bytes: 14, goes: true },
        // A live writer of this host (this process), and a writer of another host: only once old.
        { path: `data/ab/${tempName()}`, bytes: 15, goes: false },
        { path: `data/ab/${tempName()}`, bytes: 16, old: true, goes: true },
        { path: 'keys/.tmp-otherhost_0badf00d-1-0123456789abcdef', bytes: 17, goes: false },
        { path: 'keys/.tmp-otherhost_0badf00d-2-0123456789abcdef', bytes: 18, old: true, goes: true },
      ];
      for (const file of files) {
        await mkdir(join(folder, file.path, '..'), { recursive: true });
        await writeFile(join(folder, file.path), Buffer.alloc(file.bytes));
        if (file.old) await utimes(join(folder, file.path), old, old);
      }
      const keysBefore = [];
      for await (const info of target.list('')) keysBefore.push(info.key);

      const removed = await target.removeLeftovers(new Date(Date.now() - hour));
      const gone = files.filter((f) => f.goes);
      expect(removed).toEqual({ count: gone.length, bytes: gone.reduce((n, f) => n + f.bytes, 0) });
      for (const file of files) expect(await stat(join(folder, file.path)).then(() => true, () => false), file.path).toBe(!file.goes);
      const keysAfter = [];
      for await (const info of target.list('')) keysAfter.push(info.key);
      expect(keysAfter.sort()).toEqual(keysBefore.sort());
      expect(keysAfter.sort()).toEqual(['data/ab/abcd', 'index/0123']);
      expect(await target.removeLeftovers(new Date(Date.now() - hour))).toEqual({ count: 0, bytes: 0 });
    } finally {
      await target.dispose();
    }
  });

  it('removeLeftovers finds nothing in a repository folder that does not exist', async () => {
    const { target } = await makeTarget();
    try {
      expect(await target.removeLeftovers(new Date())).toEqual({ count: 0, bytes: 0 });
    } finally {
      await target.dispose();
    }
  });

  it('rejects keys that would leave the repository folder', async () => {
    const { target } = await makeTarget();
    try {
      for (const key of ['../escape', 'data/../../x', '/etc/passwd', 'data//x', '', 'data/.tmp-1', 'Data/x']) {
        await expect(target.put(key, Buffer.from('x')), key).rejects.toBeInstanceOf(TargetError);
      }
    } finally {
      await target.dispose();
    }
  });

  it('reports a failing write as a TargetError naming host and path', async () => {
    const { target, folder } = await makeTarget();
    try {
      await mkdir(folder, { recursive: true });
      await writeFile(join(folder, 'data'), 'a file where a folder should be');
      const error = await target.put('data/ab/abcd', Buffer.from('x')).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(TargetError);
      expect((error as Error).message).toContain(`127.0.0.1:${folder}/data`);
    } finally {
      await target.dispose();
    }
  });

  it('accepts a server whose key is pinned by fingerprint', async () => {
    const { target } = await makeTarget({ hostKeyFingerprint: server!.hostFingerprint, knownHostsPath: server!.emptyKnownHostsPath });
    try {
      await target.put('config', Buffer.from('x'));
      expect((await target.get('config')).toString()).toBe('x');
    } finally {
      await target.dispose();
    }
  });

  it('refuses a pinned fingerprint that does not match, showing the one seen', async () => {
    const { target } = await makeTarget({ hostKeyFingerprint: `SHA256:${'A'.repeat(43)}` });
    const error = await target.stat('config').catch((err: unknown) => err);
    await target.dispose();
    expect(error).toBeInstanceOf(TargetError);
    expect((error as Error).message).toContain(server!.hostFingerprint);
    expect((error as Error).message).toMatch(/does not match the pinned fingerprint/);
  });

  it('refuses an unknown host key, and accepts it only with acceptNewHostKey, recording it', async () => {
    const knownHosts = join(server!.dir, `known_hosts-${randomBytes(4).toString('hex')}`);
    await writeFile(knownHosts, '');
    const refused = await makeTarget({ knownHostsPath: knownHosts });
    const error = await refused.target.stat('config').catch((err: unknown) => err);
    await refused.target.dispose();
    expect((error as Error).message).toMatch(/host key of SFTP server 127\.0\.0\.1 port \d+ is unknown/);
    expect((error as Error).message).toContain(server!.hostFingerprint);

    const accepting = await makeTarget({ knownHostsPath: knownHosts, acceptNewHostKey: true });
    await accepting.target.put('config', Buffer.from('x'));
    await accepting.target.dispose();
    expect(await readFile(knownHosts, 'utf8')).toBe(server!.knownHostsLine());
  });

  it('asks for the host key type known_hosts holds (an RSA key, where the server prefers ed25519)', async () => {
    // Without a preference the server shows its ed25519 key (every other test here checks that one).
    expect(await readFile(server!.rsaKnownHostsPath, 'utf8')).toMatch(/^\[127\.0\.0\.1\]:\d+ ssh-rsa /);
    const { target, folder } = await makeTarget({ knownHostsPath: server!.rsaKnownHostsPath });
    const logFrom = server!.log().length;
    try {
      await target.put('config', Buffer.from('x'));
    } finally {
      await target.dispose();
    }
    // sshd negotiated its RSA host key, on this one connection, and the upload went through. The
    // first algorithm the client offers that the server has wins: the strongest signature, SHA-512
    // (this OpenSSH has rsa-sha2-512 and rsa-sha2-256; the client's list must not start with SHA-1's ssh-rsa).
    const log = await server!.waitForLog(/kex: host key algorithm: /, logFrom);
    expect([...log.matchAll(/kex: host key algorithm: (\S+)/g)].map((m) => m[1])).toEqual(['rsa-sha2-512']);
    expect(await readFile(join(folder, 'config'), 'utf8')).toBe('x');
  });

  it('refuses a changed host key even with acceptNewHostKey', async () => {
    const { target } = await makeTarget({ knownHostsPath: server!.wrongKnownHostsPath, acceptNewHostKey: true });
    const error = await target.stat('config').catch((err: unknown) => err);
    await target.dispose();
    expect(error).toBeInstanceOf(TargetError);
    expect((error as Error).message).toMatch(/HAS CHANGED/);
    expect((error as Error).message).toContain(server!.hostFingerprint);
  });

  it('refuses a wrong private key with a clear message, without retrying', async () => {
    // Through a proxy that counts connections: one attempt, not one per retry.
    await withProxiedTarget({ privateKeyPath: server!.wrongKeyPath }, async ({ target, proxy }) => {
      const error = await target.stat('config').catch((err: unknown) => err);
      expect(error).toBeInstanceOf(TargetError);
      expect((error as Error).message).toMatch(/refused to log in user '.+' with the key .*wrong_ed25519/);
      expect(proxy.accepted).toBe(1);
    });
  });

  it('logs in with a passphrase-protected key, the passphrase read as a secret', async () => {
    const { target } = await makeTarget({ privateKeyPath: server!.passphraseKeyPath, passphrase: { env: 'KEY_PASS' } }, { KEY_PASS: KEY_PASSPHRASE });
    try {
      await target.put('config', Buffer.from('x'));
    } finally {
      await target.dispose();
    }
    const wrong = await makeTarget({ privateKeyPath: server!.passphraseKeyPath, passphrase: { env: 'KEY_PASS' } }, { KEY_PASS: 'not it' });
    const error = await wrong.target.stat('config').catch((err: unknown) => err);
    await wrong.target.dispose();
    expect(error).toBeInstanceOf(TargetError);
    expect((error as Error).message).toMatch(/Cannot use the private key .*passphrase_ed25519/);
  });

  it('logs in with the keys of an ssh-agent', async () => {
    const socket = join(server!.dir, `agent-${randomBytes(4).toString('hex')}.sock`);
    const agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 50 && !(await stat(socket).catch(() => undefined)); i++) await new Promise((r) => setTimeout(r, 20));
      await promisify(execFile)('ssh-add', [server!.clientKeyPath], { env: { ...process.env, SSH_AUTH_SOCK: socket } });
      const { target } = await makeTarget({ privateKeyPath: undefined, agent: socket });
      try {
        await target.put('config', Buffer.from('via agent'));
        expect((await target.get('config')).toString()).toBe('via agent');
      } finally {
        await target.dispose();
      }
    } finally {
      if (agent.pid !== undefined) process.kill(agent.pid, 'SIGTERM');
    }
  });

  it('fails fast and clearly when nothing listens on the port', async () => {
    const { target } = await makeTarget({ port: 1 });
    const error = await target.stat('config').catch((err: unknown) => err);
    await target.dispose();
    expect(error).toBeInstanceOf(TargetError);
    expect((error as Error).message).toMatch(/Cannot connect to SFTP server 127\.0\.0\.1 port 1 \(repository .*\): connection refused/);
  });

  it('reconnects and retries when the connection is cut in the middle of a transfer', async () => {
    await withProxiedTarget({ connections: 1 }, async ({ target, proxy }) => {
      await target.put('config', Buffer.from('before'));
      const big = randomBytes(8 * 1024 * 1024);
      proxy.cutAfter(2 * 1024 * 1024);
      await target.put('data/ff/big', big);
      expect(proxy.cuts).toBe(1);
      expect(proxy.accepted).toBe(2); // the first connection, and the one the retry opened
      expect(Buffer.compare(await target.get('data/ff/big'), big)).toBe(0);
      proxy.cutAll();
      expect((await target.get('config')).toString()).toBe('before');
    });
  });

  it('a streamed object whose connection is cut midway goes on in the same temp file on a new connection, and commits whole', async () => {
    await withProxiedTarget({ connections: 1 }, async ({ target, folder, proxy }) => {
      await target.put('config', Buffer.from('before'));
      const big = randomBytes(12 * 1024 * 1024);
      const writer = await target.openWriter();
      const piece = Buffer.alloc(1024 * 1024);
      proxy.cutAfter(5 * 1024 * 1024);
      for (let at = 0; at < big.length; at += piece.length) {
        // The writer copies a piece: the caller's buffer is used again at once, as a pack's staging buffer is.
        big.copy(piece, 0, at, at + piece.length);
        await writer.write(piece);
      }
      await writer.commit('data/ee/big');
      expect(proxy.cuts).toBe(1);
      expect(proxy.accepted).toBe(2);
      expect(Buffer.compare(await readFile(join(folder, 'data/ee/big')), big)).toBe(0);
      // One temp file was written, resumed and renamed: none is left.
      expect(await tempFilesIn(folder)).toEqual([]);
    });
  });

  it('an aborted streamed object leaves nothing, also when its connection was cut', async () => {
    await withProxiedTarget({ connections: 1 }, async ({ target, folder, proxy }) => {
      const first = await target.openWriter();
      // More than UNACKNOWLEDGED_BYTES: the write waits until the server has it.
      await first.write(randomBytes(UNACKNOWLEDGED_BYTES + 1024 * 1024));
      expect(await tempFilesIn(folder)).toHaveLength(1);
      await first.abort();
      expect(await tempFilesIn(folder)).toEqual([]);

      const second = await target.openWriter();
      await second.write(randomBytes(UNACKNOWLEDGED_BYTES + 1024 * 1024));
      proxy.cutAll();
      await second.abort();
      // Removed once a connection works again (after the put; the server answers the stat after it).
      await target.put('config', Buffer.from('after'));
      await target.stat('config');
      expect(await tempFilesIn(folder)).toEqual([]);
      expect([...(await readdir(folder))].sort()).toEqual(['config']);
    });
  });

  it('drops a connection on which the server stopped answering, and retries on a new one', async () => {
    await withProxiedTarget({ connections: 1, operationTimeoutSeconds: 1, keepaliveSeconds: 0 }, async ({ target, proxy }) => {
      await target.put('config', Buffer.from('before'));
      expect([proxy.accepted, proxy.open]).toEqual([1, 1]);
      proxy.stallAll();
      expect((await target.get('config')).toString()).toBe('before');
      // The client closed the silent connection itself (the proxy never does), and opened one new connection.
      expect(proxy.cuts).toBe(0);
      expect([proxy.accepted, proxy.open]).toEqual([2, 1]);
    });
  });

  it('gives up with a clear error when the server stays unreachable', async () => {
    await withProxiedTarget({ retryForSeconds: 1 }, async ({ target, proxy }) => {
      await target.put('config', Buffer.from('x'));
      await proxy.close();
      const error = await target.get('config').catch((err: unknown) => err);
      expect(error).toBeInstanceOf(TargetError);
      expect((error as Error).message).toMatch(/^Cannot read 127\.0\.0\.1:.*\/config: lost the connection and could not get it back within 1 s/);
    });
  });
});

describe('plugin entry point', () => {
  it('does not load the SSH library when activated', async () => {
    const entry = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    const script = `
      import { createRequire } from 'node:module';
      const { activate } = await import(${JSON.stringify(entry)});
      const registered = [];
      await activate({ subscriptions: { push() {} }, targets: { register: (type) => registered.push(type) } });
      const loaded = () => Object.keys(createRequire(import.meta.url).cache).filter((p) => /[\\\\/]ssh2/.test(p)).length;
      const before = loaded();
      await import(${JSON.stringify(entry.replace(/index\.js$/, 'sftp-target.js'))});
      await import('ssh2-sftp-client');
      console.log(JSON.stringify({ registered, before, loadedLater: loaded() > 0 }));
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
    });
    expect(JSON.parse(stdout)).toEqual({ registered: ['sftp'], before: 0, loadedLater: true });
  });
});
