// S3 servers for the tests, each on a free 127.0.0.1 port with its data in a temporary folder:
// Ceph RGW (a one-monitor, one-OSD cluster from Debian's packages) and s3rver (npm).
// Every process is started here and stopped by its process id, also when startup fails.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { run } from '../utils/exec.js';

// s3rver is a dev dependency of the e2e package itself.
const S3RVER_BIN = createRequire(import.meta.url).resolve('s3rver/bin/s3rver.js');

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface S3Server {
  readonly name: string;
  readonly endpoint: string;
  readonly credentials: S3Credentials;
  /** Kills the S3 front end (radosgw, or s3rver) by its process id, as if the server went away. */
  kill(): Promise<void>;
  /** Starts the front end again on the same port with the same data. */
  restart(): Promise<void>;
  /** Stops everything by process id and deletes the data. */
  stop(): Promise<void>;
  /** The ids of the server's running processes (the benchmark counts the CPU time they use). */
  pids(): number[];
}

const running = (...children: Array<ChildProcess | undefined>): number[] =>
  children.flatMap((child) => (child?.pid && child.exitCode === null && child.signalCode === null ? [child.pid] : []));

/** Live child processes of this test file, killed on exit if a test forgot (never by name). */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) if (child.exitCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
});

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

function daemon(command: string, args: string[], logFile?: string): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', logFile ? 'pipe' : 'ignore'] });
  live.add(child);
  child.on('exit', () => live.delete(child));
  return child;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
async function stopProcess(child: ChildProcess | undefined, graceMs = 1500): Promise<void> {
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  process.kill(child.pid, 'SIGTERM');
  const timer = setTimeout(() => child.pid && child.exitCode === null && process.kill(child.pid, 'SIGKILL'), graceMs);
  await gone;
  clearTimeout(timer);
}

async function waitForHttp(url: string, timeoutMs: number, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await fetch(url, { signal: AbortSignal.timeout(1000) });
      return;
    } catch {
      if (child && child.exitCode !== null) throw new Error(`${url}: the server exited with ${child.exitCode}`);
      if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

// ---------------------------------------------------------------- s3rver

/** s3rver in its own process (so it can be killed mid-backup), with `buckets` created. */
export async function startS3rver(buckets: string[]): Promise<S3Server> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-s3rver-'));
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  const start = async () => {
    const args = ['--openssl-legacy-provider', S3RVER_BIN, '-d', dir, '-a', '127.0.0.1', '-p', String(port), '--silent', ...buckets.flatMap((b) => ['--configure-bucket', b])];
    child = daemon(process.execPath, args);
    await waitForHttp(endpoint, 10_000, child);
  };
  try {
    await start();
  } catch (err) {
    await stopProcess(child);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    name: 's3rver',
    endpoint,
    // s3rver's fixed key pair.
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    kill: () => stopProcess(child, 0),
    restart: start,
    pids: () => running(child),
    async stop() {
      await stopProcess(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------- Ceph RGW

export function cephAvailable(): boolean {
  return ['/usr/bin/ceph-mon', '/usr/bin/ceph-osd', '/usr/bin/radosgw', '/usr/bin/radosgw-admin', '/usr/bin/ceph', '/usr/bin/monmaptool'].every((p) => existsSync(p));
}

const RGW_POOLS = ['.rgw.root', 'default.rgw.control', 'default.rgw.meta', 'default.rgw.log', 'default.rgw.buckets.index', 'default.rgw.buckets.data', 'default.rgw.buckets.non-ec'];

/**
 * A single-node Ceph cluster: one monitor, one bluestore OSD on a sparse file, radosgw.
 * Auth is off inside the cluster (S3 signatures are still checked by RGW). The ms_*_mode
 * settings allow crc, without which radosgw waits 300 s for a secure monitor session.
 */
export async function startCeph(): Promise<S3Server> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-ceph-'));
  const [monPort, rgwPort] = [await freePort(), await freePort()];
  const conf = join(dir, 'ceph.conf');
  const c = ['-c', conf];
  const fsid = randomUUID();
  const credentials = { accessKeyId: 'CAIRNTESTKEY', secretAccessKey: randomUUID().replaceAll('-', '') };
  const endpoint = `http://127.0.0.1:${rgwPort}`;
  let mon: ChildProcess | undefined;
  let osd: ChildProcess | undefined;
  let rgw: ChildProcess | undefined;
  const ceph = async (...args: string[]) => (await run('ceph', [...c, '--connect-timeout', '20', ...args], { timeoutMs: 30_000 })).trim();
  const startRgw = async () => {
    rgw = daemon('radosgw', ['-f', '-n', 'client.rgw.a', ...c]);
    await waitForHttp(endpoint, 30_000, rgw);
  };
  const stopAll = async () => {
    await stopProcess(rgw, 500);
    await stopProcess(osd, 500);
    await stopProcess(mon, 500);
  };
  try {
    for (const sub of ['mon', 'osd/ceph-0', 'run', 'log', 'rgw']) await mkdir(join(dir, sub), { recursive: true });
    await writeFile(
      conf,
      `[global]
fsid = ${fsid}
mon_host = [v2:127.0.0.1:${monPort}]
mon_initial_members = a
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc secure
ms_client_mode = crc secure
ms_mon_service_mode = crc secure
ms_service_mode = crc secure
ms_cluster_mode = crc secure
ms_mon_cluster_mode = crc secure
ms_bind_msgr1 = false
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_max_pg_per_osd = 1000
osd_crush_chooseleaf_type = 0
run_dir = ${dir}/run
admin_socket = ${dir}/run/$name.asok
log_file = ${dir}/log/$name.log
pid_file = ${dir}/run/$name.pid
mon_data = ${dir}/mon/$cluster-$id
osd_data = ${dir}/osd/$cluster-$id
osd_objectstore = bluestore
bluestore_block_path = ${dir}/osd/block
bluestore_block_size = 21474836480
bluestore_block_create = true
bluestore_fsck_on_mkfs = false
bluestore_cache_size = 268435456
osd_memory_target = 1073741824
[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw_data = ${dir}/rgw
rgw_enable_usage_log = false
`,
    );
    await run('monmaptool', ['--create', '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, '--fsid', fsid, join(dir, 'monmap')]);
    await run('ceph-mon', ['--mkfs', '-i', 'a', '--monmap', join(dir, 'monmap'), ...c]);
    mon = daemon('ceph-mon', ['-f', '-i', 'a', ...c]);
    const osdUuid = randomUUID();
    const osdId = await ceph('osd', 'new', osdUuid);
    await run('ceph-osd', ['-i', osdId, '--mkfs', '--osd-uuid', osdUuid, ...c]);
    osd = daemon('ceph-osd', ['-f', '-i', osdId, ...c]);
    // Pools first (in parallel: each `ceph` call costs about a second), so RGW's first request finds them.
    await Promise.all(RGW_POOLS.map((pool) => ceph('osd', 'pool', 'create', pool, '8', '8').then(() => ceph('osd', 'pool', 'application', 'enable', pool, 'rgw'))));
    for (const deadline = Date.now() + 30_000; !/1 up/.test(await ceph('osd', 'stat')); ) {
      if (Date.now() > deadline) throw new Error('the OSD did not come up within 30 s');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await run('radosgw-admin', [...c, 'user', 'create', '--uid', 'cairn', '--display-name', 'cairn tests', '--access-key', credentials.accessKeyId, '--secret', credentials.secretAccessKey], { timeoutMs: 60_000 });
    await startRgw();
  } catch (err) {
    await stopAll();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    name: 'Ceph RGW',
    endpoint,
    credentials,
    kill: () => stopProcess(rgw, 0),
    restart: startRgw,
    pids: () => running(mon, osd, rgw),
    async stop() {
      await stopAll();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
