// Backup and restore throughput over SFTP (local sshd) against the local target, on one ~256 MiB
// ext4 image. Measurement only, no assertions on timings; skipped unless CAIRN_SFTP_BENCH=1:
//   CAIRN_SFTP_BENCH=1 npx vitest run test/sftp/throughput.test.ts
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sshdAvailable, startSshd, type SshServer } from './sshd.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

/** One-way delay of the proxy that imitates a network (20 ms round trip). */
const DELAY_MS = 10;

const run = promisify(execFile);
const WORKSPACE = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(WORKSPACE, 'packages/core/bin/cairn.js');
const MiB = 1024 * 1024;
const IMAGE_SIZE = 256 * MiB;

let server: SshServer;
let slowProxy: TcpProxy;
let work: string;
let image: string;
let pluginsFile: string;

/** Runs the CLI and returns its wall time in seconds (asynchronously: the latency proxy lives in this process). */
async function timed(args: string[]): Promise<number> {
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, [CLI, '--plugins', pluginsFile, ...args], {
    env: { ...process.env, CAIRN_PASSWORD: 'bench', SSH_AUTH_SOCK: '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  expect(status, `cairn ${args.join(' ')}: ${stderr}`).toBe(0);
  return seconds;
}

describe.skipIf(!sshdAvailable || !process.env['CAIRN_SFTP_BENCH'])('throughput: sftp vs local', () => {
  beforeAll(async () => {
    server = await startSshd();
    slowProxy = await startTcpProxy(server.port, '127.0.0.1', DELAY_MS);
    await writeFile(join(server.dir, 'known_hosts.slow'), server.knownHostsLine(slowProxy.port));
    work = await mkdtemp(join(tmpdir(), 'cairn-sftp-bench-'));
    pluginsFile = join(work, 'plugins.json');
    const plugins = ['source-volume', 'codec-zstd', 'target-local', 'target-sftp'].map((p) => join(WORKSPACE, 'packages', p));
    await writeFile(pluginsFile, JSON.stringify({ plugins }));
    // Random-ish: 150 MiB of random bytes, 60 MiB of compressible text (hex of random bytes).
    const content = join(work, 'content');
    await run('mkdir', [content]);
    for (let i = 0; i < 5; i++) await writeFile(join(content, `random-${i}.bin`), randomBytes(30 * MiB));
    for (let i = 0; i < 2; i++) await writeFile(join(content, `text-${i}.txt`), randomBytes(15 * MiB).toString('hex'));
    image = join(work, 'bench.img');
    await run('truncate', ['-s', String(IMAGE_SIZE), image]);
    await run('mkfs.ext4', ['-q', '-F', '-d', content, image]);
    await rm(content, { recursive: true });
  }, 300_000);
  afterAll(async () => {
    await slowProxy?.close();
    await server?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  const targets: Array<[string, () => Record<string, unknown>]> = [
    ['local', () => ({ type: 'local', path: join(work, 'local-repo') })],
    ...[
      [1, 1, false],
      [1, 32, false],
      [2, 32, false],
      [4, 32, false],
      [1, 1, true],
      [1, 32, true],
      [2, 32, true],
    ].map(([connections, requestsInFlight, slow]): [string, () => Record<string, unknown>] => [
      `sftp${slow ? ` over ${2 * DELAY_MS} ms RTT` : ''}, ${connections} connection(s), ${requestsInFlight} request(s) in flight${requestsInFlight === 1 ? ' (naive sequential)' : ''}`,
      () => ({
        type: 'sftp',
        host: server.host,
        port: slow ? slowProxy.port : server.port,
        username: server.username,
        path: join(server.root, `repo-${connections}-${requestsInFlight}-${slow}`),
        privateKeyPath: server.clientKeyPath,
        knownHostsPath: slow ? join(server.dir, 'known_hosts.slow') : server.knownHostsPath,
        agent: false,
        connections,
        requestsInFlight,
      }),
    ]),
  ];

  it.each(targets)('%s', async (name, target) => {
    const job = join(work, `${name.replace(/\W+/g, '-')}.json`);
    await writeFile(job, JSON.stringify({ name: 'bench', source: { type: 'volume', path: image, mode: 'exact' }, compression: { type: 'zstd', level: 3 }, target: target(), password: { env: 'CAIRN_PASSWORD' } }));
    await timed(['init', job]);
    const backup = await timed(['backup', job]);
    const restored = join(work, 'restored.img');
    const restore = await timed(['restore', job, 'latest', '--to', restored, '--force']);
    await run('cmp', [image, restored]);
    await rm(restored);
    const mbps = (s: number) => (IMAGE_SIZE / MiB / s).toFixed(1);
    console.log(`THROUGHPUT ${name}: backup ${backup.toFixed(2)} s (${mbps(backup)} MiB/s), restore ${restore.toFixed(2)} s (${mbps(restore)} MiB/s)`);
  }, 600_000);
});
