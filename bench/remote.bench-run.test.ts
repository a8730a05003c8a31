// The remote part of `pnpm bench` (not a test: it asserts nothing about timings). bench.mjs runs
//   npx vitest run --config bench/vitest.config.ts
// with CAIRN_BENCH_REMOTE=<config.json> and reads the results file the config names. It starts
// the test harness's servers (a one-node Ceph RGW from test/s3/servers.ts, an OpenSSH sshd from
// @cairn/target-sftp/testing) and times, on the bench's own volume images, the same steps as the local
// cairn runs: init, full backup (sysvol), incremental (sysvol2), restore of latest, each a
// whole CLI process under /usr/bin/time; plus restic's SFTP backend against the same sshd.
// Every step's failure is recorded in the results, not thrown, so one target cannot hide another.
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'vitest';
import { createBucket, openS3Target } from '../packages/target-s3/dist/testing.js';
import { cephAvailable, startCeph, type S3Server } from '../test/s3/servers.js';
import { sshdAvailable, startSshd, type SshServer } from '../packages/target-sftp/dist/testing/index.js';

interface Config {
  images: { sysvol: string; sysvol2: string };
  mode: string;
  level: number;
  work: string;
  out: string;
  s3: boolean;
  sftp: boolean;
  restic: boolean;
}
interface Step {
  wall?: number;
  rssMB?: number;
  /** User + system CPU-seconds of the command (and its children). */
  cpuS?: number;
  /** CPU-seconds the server's processes used meanwhile (they share the machine's cores). */
  serverCpuS?: number;
  storedMB?: number | null;
  addedMB?: number | null;
  verified?: boolean;
  verifiedBy?: string;
  failed?: boolean;
  error?: string;
}
interface TargetResult {
  tool: string;
  target: string;
  detail: string;
  steps: Record<string, Step>;
  error?: string;
}

const CONFIG_FILE = process.env['CAIRN_BENCH_REMOTE'];
const config: Config | null = CONFIG_FILE ? JSON.parse(readFileSync(CONFIG_FILE, 'utf8')) : null;
const WORKSPACE = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(WORKSPACE, 'packages/core/bin/cairn.js');
const VERIFY = join(WORKSPACE, 'bench/verify-restore.sh');
const MB = 1024 * 1024;
const results: { targets: TargetResult[]; servers: Record<string, unknown> } = { targets: [], servers: {} };
const save = () => config && writeFileSync(config.out, `${JSON.stringify(results, null, 2)}\n`);
const log = (msg: string) => process.stdout.write(`bench remote: ${msg}\n`);

function sh(cmd: string, env: Record<string, string> = {}) {
  const r = spawnSync('bash', ['-c', cmd], { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 * MB });
  return { status: r.status ?? 1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}
const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
const duMB = (p: string) => (existsSync(p) ? Number(sh(`du -sb ${q(p)}`).stdout.split(/\s/)[0]) / MB : null);

/** argv under /usr/bin/time, as bench.mjs's timed(): dirty data synced first, the page cache left as it is. */
function timed(argv: string[], env: Record<string, string> = {}): { ok: boolean; wall: number; rssMB: number; cpuS: number; out: string } {
  sh('sync');
  const tfile = join(tmpdir(), `cairn-bench-remote-time.${process.pid}`);
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M %U %S', '-o', tfile, ...argv], {
    encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 * MB, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const [wall, rss, user, sys] = (existsSync(tfile) ? readFileSync(tfile, 'utf8').trim().split('\n').at(-1)! : '0 0 0 0').split(' ').map(Number);
  rmSync(tfile, { force: true });
  return { ok: r.status === 0, wall: wall!, rssMB: rss! / 1024, cpuS: user! + sys!, out: `${r.stderr ?? ''}${r.stdout ?? ''}`.trim().slice(-600) };
}

const TICKS_PER_SECOND = Number(sh('getconf CLK_TCK').stdout.trim()) || 100;

/**
 * CPU-seconds used so far by these processes, their threads and their children that have
 * exited (/proc/<pid>/stat: utime, stime, cutime, cstime); sshd's sessions are such children.
 */
function cpuSecondsOf(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const stat = existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, 'utf8') : '';
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    for (const at of [11, 12, 13, 14]) ticks += Number(fields[at] ?? 0);
  }
  return ticks / TICKS_PER_SECOND;
}

/** Waits (up to 3 s) until none of these processes has a child left, so that what the children used is counted. */
async function childrenReaped(pids: number[]): Promise<void> {
  const children = () => pids.some((pid) => existsSync(`/proc/${pid}/task/${pid}/children`) && readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim() !== '');
  for (let waited = 0; waited < 3000 && children(); waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
}

/**
 * Times init, full, incr and restore of `run` (a CLI), storing the result as it goes.
 * `stored()` measures the repository's size; `restoreTo(file)` the command that restores latest.
 */
function measure(res: TargetResult, plan: Array<[string, string[], Record<string, string>]>, stored: () => Promise<number | null>, verify: (restored: string) => Step, serverPids: () => number[]) {
  return (async () => {
    let last = 0;
    for (const [step, argv, env] of plan) {
      const pids = serverPids();
      const before = cpuSecondsOf(pids);
      const t = timed(argv, env);
      await childrenReaped(pids);
      const s: Step = { wall: t.wall, rssMB: t.rssMB, cpuS: t.cpuS, serverCpuS: cpuSecondsOf(pids) - before };
      res.steps[step] = s;
      if (!t.ok) {
        s.failed = true;
        s.error = t.out;
        log(`${res.tool} → ${res.target} ${step} FAILED: ${t.out.split('\n').slice(-3).join(' | ')}`);
        return;
      }
      if (step === 'full' || step === 'incr') {
        s.storedMB = await stored().catch(() => null);
        s.addedMB = s.storedMB == null ? null : s.storedMB - last;
        last = s.storedMB ?? last;
      }
      if (step === 'restore') Object.assign(s, verify(join(config!.work, 'restored.img')));
      log(`${res.tool} → ${res.target} ${step}: ${t.wall.toFixed(2)} s` + (s.storedMB != null ? `, stored ${s.storedMB.toFixed(1)} MB` : '') +
        (s.verifiedBy ? `, ${s.verifiedBy} ${s.verified ? 'OK' : 'FAILED'}` : ''));
      save();
    }
  })();
}

function verifyWith(mode: string) {
  return (restored: string): Step => {
    const r = sh(`bash ${q(VERIFY)} ${q(mode)} ${q(restored)} ${q(config!.images.sysvol2)}`);
    rmSync(restored, { force: true });
    const line = r.stdout.trim().split('\n').at(-1) ?? '';
    return { verified: r.status === 0, verifiedBy: line.replace(/^(OK|FAILED) /, '').replace(/ \(.*\)$/, '').replace(/:.*/, ''), ...(r.status === 0 ? {} : { error: `${line}\n${r.stderr.slice(-400)}` }) };
  };
}

/** The plan of one cairn target: a job file per image, both pointing at `target`. */
function cairnPlan(name: string, target: Record<string, unknown>, env: Record<string, string>): Array<[string, string[], Record<string, string>]> {
  const c = config!;
  const job = (image: string, file: string) => {
    const p = join(c.work, `${name}-${file}.json`);
    writeFileSync(p, JSON.stringify({ name: 'bench', source: { type: 'volume', path: image, mode: c.mode }, compression: { type: 'zstd', level: c.level }, target, password: { env: 'CAIRN_PASSWORD' } }, null, 2));
    return p;
  };
  const j1 = job(c.images.sysvol, 'sysvol');
  const j2 = job(c.images.sysvol2, 'sysvol2');
  const e = { CAIRN_PASSWORD: 'bench', SSH_AUTH_SOCK: '', ...env };
  const cli = (...args: string[]) => ['node', CLI, ...args];
  return [
    ['init', cli('init', j1), e],
    ['full', cli('backup', j1), e],
    ['incr', cli('backup', j2), e],
    ['restore', cli('restore', j2, 'latest', '--to', join(c.work, 'restored.img'), '--force'), e],
  ];
}

const warm = () => sh(`cat ${q(config!.images.sysvol)} ${q(config!.images.sysvol2)} > /dev/null`);

describe.skipIf(!config)('remote targets for pnpm bench', () => {
  it('Ceph RGW (S3)', async () => {
    const c = config!;
    if (!c.s3) return;
    const res: TargetResult = { tool: `cairn ${c.mode}`, target: 'Ceph RGW (S3)', detail: '', steps: {} };
    results.targets.push(res);
    if (!cephAvailable()) {
      res.error = 'Ceph is not installed (ceph-mon, ceph-osd, radosgw)';
      save();
      return;
    }
    let server: S3Server | undefined;
    try {
      const started = Date.now();
      server = await startCeph();
      results.servers['ceph'] = { startS: (Date.now() - started) / 1000, endpoint: server.endpoint };
      log(`Ceph RGW up at ${server.endpoint} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      const bucket = 'cairn-bench';
      await createBucket(server.endpoint, bucket, server.credentials);
      const prefix = `bench/${randomUUID()}`;
      const secret = join(c.work, 's3.secret');
      writeFileSync(secret, server.credentials.secretAccessKey, { mode: 0o600 });
      res.detail = `${server.endpoint}, bucket ${bucket}, one bluestore OSD on a sparse file in ${tmpdir()}`;
      const target = { type: 's3', endpoint: server.endpoint, bucket, prefix, credentials: { accessKeyId: { env: 'BENCH_S3_KEY' }, secretAccessKey: { file: secret } } };
      const s3 = await openS3Target({ endpoint: server.endpoint, bucket }, server.credentials);
      const stored = async () => {
        let bytes = 0;
        let token: string | undefined;
        do {
          const page = await s3.client.send(new s3.sdk.ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/`, ContinuationToken: token }));
          for (const o of page.Contents ?? []) bytes += o.Size ?? 0;
          token = page.IsTruncated ? page.NextContinuationToken : undefined;
        } while (token);
        return bytes / MB;
      };
      warm();
      try {
        await measure(res, cairnPlan('s3', target, { BENCH_S3_KEY: server.credentials.accessKeyId }), stored, verifyWith(c.mode), () => server!.pids());
      } finally {
        await s3.dispose();
      }
    } catch (err) {
      res.error = String((err as Error)?.stack ?? err).slice(0, 600);
      log(`Ceph RGW: ${res.error}`);
    } finally {
      await server?.stop();
      save();
    }
  });

  it('SFTP (OpenSSH sshd), cairn and restic', async () => {
    const c = config!;
    if (!c.sftp) return;
    const res: TargetResult = { tool: `cairn ${c.mode}`, target: 'SFTP (sshd)', detail: '', steps: {} };
    results.targets.push(res);
    if (!sshdAvailable) {
      res.error = 'OpenSSH sshd is not installed (/usr/sbin/sshd)';
      save();
      return;
    }
    let server: SshServer | undefined;
    try {
      server = await startSshd();
      const srv = server;
      res.detail = `${srv.username}@127.0.0.1:${srv.port}, the target's default connections and requests in flight`;
      log(`sshd up on 127.0.0.1:${srv.port}`);
      const repo = join(srv.root, 'cairn');
      const target = { type: 'sftp', host: srv.host, port: srv.port, username: srv.username, path: repo, privateKeyPath: srv.clientKeyPath, knownHostsPath: srv.knownHostsPath, agent: false };
      warm();
      await measure(res, cairnPlan('sftp', target, {}), async () => duMB(repo), verifyWith(c.mode), () => [srv.pid]);
      save();

      if (c.restic) {
        const rr: TargetResult = { tool: 'restic', target: 'SFTP (sshd)', detail: '', steps: {} };
        results.targets.push(rr);
        // restic runs ssh itself: an ssh_config for the harness's sshd (its port, key and known_hosts).
        const sshConfig = join(srv.dir, 'ssh_config');
        writeFileSync(sshConfig, [
          'Host cairn-bench-sshd',
          '  HostName 127.0.0.1',
          `  Port ${srv.port}`,
          `  User ${srv.username}`,
          `  IdentityFile ${srv.clientKeyPath}`,
          '  IdentitiesOnly yes',
          `  UserKnownHostsFile ${srv.knownHostsPath}`,
          '  StrictHostKeyChecking yes',
          '  BatchMode yes',
          '',
        ].join('\n'));
        const rrepo = join(srv.root, 'restic');
        const base = `restic -q -r ${q(`sftp:cairn-bench-sshd:${rrepo}`)} -o sftp.command=${q(`ssh -F ${sshConfig} cairn-bench-sshd -s sftp`)}`;
        rr.detail = `${base.replace(/^restic -q /, '')} (restic's defaults: 5 connections)`;
        const env = { RESTIC_PASSWORD: 'bench', SSH_AUTH_SOCK: '' };
        const restored = join(c.work, 'restored.img');
        warm();
        await measure(rr, [
          ['init', ['bash', '-c', `${base} init`], env],
          ['full', ['bash', '-c', `${base} backup --stdin --stdin-filename sysvol.img < ${q(c.images.sysvol)}`], env],
          ['incr', ['bash', '-c', `${base} backup --stdin --stdin-filename sysvol.img < ${q(c.images.sysvol2)}`], env],
          ['restore', ['bash', '-c', `${base} dump latest sysvol.img > ${q(restored)}`], env],
        ], async () => duMB(rrepo), verifyWith('exact'), () => [srv.pid]);
      }
    } catch (err) {
      res.error = String((err as Error)?.stack ?? err).slice(0, 600);
      log(`SFTP: ${res.error}`);
    } finally {
      await server?.stop();
      save();
    }
  });
});

if (config) mkdirSync(config.work, { recursive: true });
