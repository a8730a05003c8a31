// Backup and restore throughput to a local Ceph RGW against the local target, on one ~256 MiB ext4
// image. Measurement only, no assertions on timings; skipped unless CAIRN_S3_BENCH=1:
//   CAIRN_S3_BENCH=1 npx vitest run test/s3/throughput.test.ts
import { execFile, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBucket } from '../../packages/target-s3/dist/testing.js';
import { cephAvailable, startCeph, WORKSPACE, type S3Server } from './servers.js';

const run = promisify(execFile);
const CLI = join(WORKSPACE, 'packages/core/bin/cairn.js');
const MiB = 1024 * 1024;
const IMAGE_SIZE = 256 * MiB;
const BUCKET = 'cairn-bench';

let server: S3Server;
let work: string;
let image: string;
let pluginsFile: string;

async function timed(args: string[], env: Record<string, string> = {}): Promise<number> {
  const started = process.hrtime.bigint();
  const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [CLI, '--plugins', pluginsFile, ...args], { env: { ...process.env, CAIRN_PASSWORD: 'bench', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => resolve({ code, stderr }));
  });
  expect(result.code, result.stderr).toBe(0);
  return Number(process.hrtime.bigint() - started) / 1e9;
}

describe.skipIf(process.env['CAIRN_S3_BENCH'] !== '1' || !cephAvailable())('throughput: Ceph RGW vs local', () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'cairn-s3-bench-'));
    pluginsFile = join(work, 'plugins.json');
    await writeFile(pluginsFile, JSON.stringify({ plugins: ['source-volume', 'codec-zstd', 'target-local', 'target-s3'].map((p) => join(WORKSPACE, 'packages', p)) }));
    // ~200 MiB of files: incompressible random data and compressible text, as on a real system volume.
    const tree = join(work, 'tree');
    await mkdir(tree);
    for (let i = 0; i < 40; i++) await writeFile(join(tree, `random-${i}.bin`), randomBytes(4 * MiB));
    for (let i = 0; i < 10; i++) await writeFile(join(tree, `text-${i}.txt`), Buffer.from(`line ${i} of some compressible log text ${'x'.repeat(40)}\n`.repeat(60_000)));
    image = join(work, 'volume.img');
    await writeFile(image, '');
    await truncate(image, IMAGE_SIZE);
    await run('mkfs.ext4', ['-q', '-F', '-d', tree, image]);
    server = await startCeph();
    await createBucket(server.endpoint, BUCKET, server.credentials);
  }, 180_000);

  afterAll(async () => {
    await server?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('measures backup and restore of the same image to each target', async () => {
    const secret = join(work, 's3.secret');
    await writeFile(secret, server.credentials.secretAccessKey);
    const targets = {
      local: { type: 'local', path: join(work, 'repo') },
      'Ceph RGW': { type: 's3', endpoint: server.endpoint, bucket: BUCKET, prefix: `bench/${randomUUID()}`, credentials: { accessKeyId: { env: 'BENCH_KEY' }, secretAccessKey: { file: secret } } },
    };
    const env = { BENCH_KEY: server.credentials.accessKeyId };
    const rows: string[] = [];
    for (const [name, target] of Object.entries(targets)) {
      const job = join(work, `${name.replace(/\W/g, '')}.json`);
      await writeFile(job, JSON.stringify({ name: 'bench', source: { type: 'volume', path: image, mode: 'exact' }, compression: { type: 'zstd', level: 3 }, target, password: { env: 'CAIRN_PASSWORD' } }));
      await timed(['init', job], env);
      const backup = await timed(['backup', job], env);
      const restored = join(work, `${name.replace(/\W/g, '')}-restored.img`);
      const restore = await timed(['restore', job, 'latest', '--to', restored], env);
      await run('cmp', [image, restored]);
      await rm(restored);
      const rate = (seconds: number) => `${(IMAGE_SIZE / MiB / seconds).toFixed(0)} MiB/s (${seconds.toFixed(2)} s)`;
      rows.push(`${name.padEnd(9)} backup ${rate(backup)}  restore ${rate(restore)}`);
    }
    console.log(`\nThroughput on a ${IMAGE_SIZE / MiB} MiB ext4 image (~200 MiB of files), whole CLI runs:\n${rows.join('\n')}\n`);
  }, 300_000);
});
