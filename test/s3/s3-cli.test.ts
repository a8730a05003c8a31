// The S3 target against real S3 servers on 127.0.0.1 (Ceph RGW from Debian's packages, and s3rver):
// the target conformance suite, the CLI's full cycle, multipart uploads, refusals, and a server that
// goes away in the middle of a backup.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeTargetConformance } from '@cairn/core/testing';
import { createBucket, openS3Target, type S3Target } from '@cairn/target-s3/testing';
import { PASSWORD_ENV, REPO_ROOT, expectSuccess, run, runCli, sameBytes, startServe, tempDir, useSuiteScope, writePluginsFile, type CliResult } from '../utils/index.js';
import { cephAvailable, startCeph, startS3rver, type S3Server } from './servers.js';

const MiB = 1024 * 1024;
const BUCKET = 'cairn-e2e';

const scope = useSuiteScope();
let work: string;
let pluginsFile: string;

beforeAll(async () => {
  work = await tempDir(scope, 'cairn-s3-e2e-');
  pluginsFile = await writePluginsFile(work, [join(REPO_ROOT, 'packages/target-s3')]);
});

/** The real CLI with the S3 plugin enabled and the repository password set. */
function cairn(args: string[], env: Record<string, string> = {}, nodeArgs: string[] = []): Promise<CliResult> {
  return runCli(args, { env: { ...PASSWORD_ENV, ...env }, plugins: pluginsFile, nodeArgs });
}

async function cairnOk(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const result = await cairn(args, env);
  expectSuccess(result);
  return result;
}

/** An ext4 image of `size` bytes holding `dataBytes` of random files. */
async function makeImage(dir: string, name: string, size: number, dataBytes: number): Promise<string> {
  const tree = join(dir, `${name}-tree`);
  await mkdir(join(tree, 'sub'), { recursive: true });
  for (let i = 0; i * 4 * MiB < dataBytes; i++) await writeFile(join(tree, i % 2 ? 'sub' : '', `file-${i}.bin`), randomBytes(Math.min(4 * MiB, dataBytes - i * 4 * MiB)));
  await writeFile(join(tree, 'hello.txt'), 'hello from cairn\n');
  const image = join(dir, `${name}.img`);
  await writeFile(image, '');
  await truncate(image, size);
  await run('mkfs.ext4', ['-q', '-F', '-d', tree, image]);
  return image;
}

/** Overwrites `length` bytes at `offset` with random data, as a change between two backups. */
async function scribble(image: string, offset: number, length: number): Promise<void> {
  const handle = await open(image, 'r+');
  try {
    await handle.write(randomBytes(length), 0, length, offset);
  } finally {
    await handle.close();
  }
}

async function writeS3Job(dir: string, server: S3Server, image: string, target: Record<string, unknown> = {}, name = 'job.json'): Promise<string> {
  const job = {
    name: 's3-e2e',
    source: { type: 'volume', path: image, mode: 'exact' },
    compression: { type: 'zstd', level: 1 },
    target: {
      type: 's3',
      endpoint: server.endpoint,
      bucket: BUCKET,
      prefix: `cli/${randomUUID()}`,
      credentials: { accessKeyId: { env: 'TEST_S3_KEY' }, secretAccessKey: { file: 's3.secret' } },
      ...target,
    },
    password: { env: 'CAIRN_PASSWORD' },
  };
  await writeFile(join(dir, 's3.secret'), `${server.credentials.secretAccessKey}\n`, { mode: 0o600 });
  const path = join(dir, name);
  await writeFile(path, JSON.stringify(job, null, 2));
  return path;
}

const servers: Array<{ name: string; available: boolean; start: () => Promise<S3Server> }> = [
  // setup.sh installs Ceph; a machine without it fails here loudly unless told to skip on purpose.
  { name: 'Ceph RGW', available: process.env.CAIRN_SKIP_CEPH !== '1' || cephAvailable(), start: startCeph },
  { name: 's3rver', available: true, start: () => startS3rver([BUCKET]) },
];

for (const { name, available, start } of servers) {
  describe.skipIf(!available)(`S3 target on ${name}`, () => {
    let server: S3Server;
    let dir: string;
    const env = () => ({ TEST_S3_KEY: server.credentials.accessKeyId });

    beforeAll(async () => {
      server = await start();
      await createBucket(server.endpoint, BUCKET, server.credentials);
      dir = await mkdtemp(join(work, `${name.replace(/\W/g, '')}-`));
    }, 90_000);

    afterAll(async () => {
      await server?.stop();
    });

    describeTargetConformance(
      `S3Target on ${name}`,
      async () => ({
        target: await openS3Target({ endpoint: server.endpoint, bucket: BUCKET, prefix: `conformance/${randomUUID()}` }, server.credentials),
      }),
      // s3rver streams uploads straight into the final file; Ceph RGW, like S3, shows an object only once complete.
      name === 's3rver' ? { nonAtomicStandIn: 's3rver writes objects in place; checked on Ceph RGW' } : {},
    );

    it('reads ranges straight into the buffers with requests the server accepts as signed (no fallback to the SDK)', async () => {
      const target = await openS3Target({ endpoint: server.endpoint, bucket: BUCKET, prefix: `direct/${randomUUID()}` }, server.credentials);
      try {
        const data = randomBytes(5 * MiB + 3);
        await target.put('data/aa/pack', data);
        const into = [new Uint8Array(2 * MiB), new Uint8Array(3 * MiB)];
        await target.readInto('data/aa/pack', 3, into);
        expect(Buffer.concat(into).equals(data.subarray(3))).toBe(true);
        expect(target.directReadStats).toEqual({ direct: 1, fallback: 0, lastFallback: '' });
      } finally {
        await target.dispose();
      }
    });

    it('serves a snapshot over NBD from the bucket: nbdcopy of the export equals the restored image', async () => {
      const image = await makeImage(dir, 'served', 32 * MiB, 12 * MiB);
      const job = await writeS3Job(dir, server, image);
      await cairnOk(['init', job], env());
      const { snapshot } = JSON.parse((await cairnOk(['backup', job, '--json'], env())).stdout);
      const served = await startServe(scope, job, snapshot, dir, [], { env: env(), plugins: pluginsFile });
      const copied = join(dir, 'served-copy.img');
      await run('nbdcopy', [served.uri(), copied]);
      expect(await sameBytes(image, copied)).toBe(true);
      expect((await served.stop()).exitCode).toBe(0);
    });

    it('runs the full CLI cycle: init, backup, incremental backup, snapshots, restore byte-identical, check --read-data', async () => {
      const image = await makeImage(dir, 'cycle', 32 * MiB, 12 * MiB);
      const job = await writeS3Job(dir, server, image);
      await cairnOk(['init', job], env());
      const first = JSON.parse((await cairnOk(['backup', job, '--json'], env())).stdout);
      const v1 = join(dir, 'cycle-v1.img');
      await writeFile(v1, await readFile(image));
      await scribble(image, 20 * MiB, 2 * MiB);
      const second = JSON.parse((await cairnOk(['backup', job, '--json'], env())).stdout);
      expect(second.bytesAdded).toBeLessThan(first.bytesAdded / 2);
      const list = JSON.parse((await cairnOk(['snapshots', job, '--json'], env())).stdout);
      expect(list.map((s: { id: string }) => s.id)).toEqual([first.snapshot, second.snapshot]);
      await cairnOk(['restore', job, 'latest', '--to', join(dir, 'cycle-latest.img')], env());
      expect(await sameBytes(image, join(dir, 'cycle-latest.img'))).toBe(true);
      await cairnOk(['restore', job, first.snapshot, '--to', join(dir, 'cycle-first.img')], env());
      expect(await sameBytes(v1, join(dir, 'cycle-first.img'))).toBe(true);
      await cairnOk(['check', job, '--read-data'], env());
    });

    it('refuses wrong credentials with a message naming bucket and endpoint', async () => {
      const image = await makeImage(dir, 'creds', 8 * MiB, 0);
      const wrongKey = await writeS3Job(dir, server, image, {}, 'wrong-key.json');
      // The right key id with a wrong secret: only a server that checks signatures (RGW; s3rver does not) refuses it.
      const wrongSecret = await writeS3Job(dir, server, image, { credentials: { accessKeyId: { env: 'TEST_S3_KEY' }, secretAccessKey: { env: 'TEST_S3_WRONG_SECRET' } } }, 'wrong-secret.json');
      const cases: Array<[string, Record<string, string>]> = [[wrongKey, { TEST_S3_KEY: 'NOSUCHKEY' }]];
      if (name !== 's3rver') cases.push([wrongSecret, { ...env(), TEST_S3_WRONG_SECRET: 'not-the-secret' }]);
      for (const [job, jobEnv] of cases) {
        const result = await cairn(['init', job], jobEnv);
        expect(result.exitCode, result.stderr).toBe(1);
        expect(result.stderr).toContain(`S3 refused the credentials for bucket '${BUCKET}' at ${server.endpoint}`);
      }
    });

    it('says clearly that a bucket does not exist', async () => {
      const image = await makeImage(dir, 'nobucket', 8 * MiB, 0);
      const job = await writeS3Job(dir, server, image, { bucket: 'no-such-bucket' }, 'nobucket.json');
      for (const command of ['init', 'snapshots']) {
        const result = await cairn([command, job], env());
        expect(result.exitCode, result.stderr).toBe(1);
        expect(result.stderr).toContain(`The bucket 'no-such-bucket' at ${server.endpoint} does not exist`);
      }
    });

    it('fails clearly when the server goes away mid-backup, and recovers once it is back', async () => {
      // Large enough that, once the first new pack is visible, a dozen more are still to go.
      const image = await makeImage(dir, 'outage', 256 * MiB, 64 * MiB);
      const job = await writeS3Job(dir, server, image, { maxAttempts: 3 }, 'outage.json');
      const prefix = JSON.parse(await readFile(job, 'utf8')).target.prefix as string;
      await cairnOk(['init', job], env());
      await scribble(image, 250 * MiB, MiB);
      const v1 = join(dir, 'outage-v1.img');
      // An earlier snapshot of the same image, before the large change below.
      const first = JSON.parse((await cairnOk(['backup', job, '--json'], env())).stdout);
      await writeFile(v1, await readFile(image));
      await scribble(image, 8 * MiB, 224 * MiB);

      const probe = await openS3Target({ endpoint: server.endpoint, bucket: BUCKET, prefix }, server.credentials);
      let killed = false;
      try {
        const packsBefore = await countObjects(probe, 'data/');
        const backup = cairn(['backup', job], env());
        // Kill the server once the backup has started uploading new packs.
        for (const deadline = Date.now() + 60_000; (await countObjects(probe, 'data/')) <= packsBefore; ) {
          if (Date.now() > deadline) throw new Error('the backup uploaded nothing within 60 s');
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        await server.kill();
        killed = true;
        const failed = await backup;
        expect(failed.exitCode, failed.stderr).toBe(1);
        expect(failed.stderr).toMatch(new RegExp(`in bucket '${BUCKET}' at ${server.endpoint.replaceAll('.', '\\.')}: gave up after 3 attempts`));
      } finally {
        // The later tests need the server, whatever happened here.
        if (killed) await server.restart();
        await probe.dispose();
      }
      const list = JSON.parse((await cairnOk(['snapshots', job, '--json'], env())).stdout);
      expect(list.map((s: { id: string }) => s.id)).toEqual([first.snapshot]);
      await cairnOk(['backup', job], env());
      await cairnOk(['restore', job, first.snapshot, '--to', join(dir, 'outage-first.img')], env());
      expect(await sameBytes(v1, join(dir, 'outage-first.img'))).toBe(true);
      await cairnOk(['restore', job, 'latest', '--to', join(dir, 'outage-latest.img')], env());
      expect(await sameBytes(image, join(dir, 'outage-latest.img'))).toBe(true);
    });

    it.skipIf(name === 's3rver')('uploads a large object in parts and aborts an upload that failed', async () => {
      const settings = { endpoint: server.endpoint, bucket: BUCKET, prefix: `multipart/${randomUUID()}`, multipartThresholdMiB: 5, partSizeMiB: 5, uploadConcurrency: 3, maxAttempts: 2 };
      const target = await openS3Target(settings, server.credentials);
      try {
        const data = randomBytes(23 * MiB + 5);
        await target.put('data/aa/large', data);
        expect(await target.stat('data/aa/large')).toEqual({ key: 'data/aa/large', size: data.length });
        expect(Buffer.compare(await target.get('data/aa/large'), data)).toBe(0);
        const range = { offset: 10 * MiB - 3, length: 7 };
        expect(Buffer.compare(await target.get('data/aa/large', range), data.subarray(range.offset, range.offset + range.length))).toBe(0);

        // Part 3 fails for good: the upload is aborted, nothing is visible, nothing is left billed.
        target.client.middlewareStack.add(
          (next) => async (args) => {
            if ((args.input as { PartNumber?: number }).PartNumber === 3) throw Object.assign(new Error('injected'), { name: 'InvalidPart', $metadata: { httpStatusCode: 400 } });
            return next(args);
          },
          { step: 'initialize', name: 'failPart3' },
        );
        await expect(target.put('data/bb/broken', data)).rejects.toThrow(/upload part 3\/5 of 'data\/bb\/broken'/);
        target.client.middlewareStack.remove('failPart3');
        expect(await target.listIncompleteUploads()).toEqual([]);
        expect(await countObjects(target, 'data/bb/')).toBe(0);

        // An upload left behind by a crash is aborted by the cleanup.
        await target.client.send(new target.sdk.CreateMultipartUploadCommand({ Bucket: BUCKET, Key: `${settings.prefix}/data/cc/crashed` }));
        expect(await target.listIncompleteUploads()).toHaveLength(1);
        expect(await target.abortIncompleteUploads(0)).toBe(1);
        expect(await target.listIncompleteUploads()).toEqual([]);
      } finally {
        await target.dispose();
      }
    });

    it.skipIf(name === 's3rver')('removeLeftovers aborts the unfinished multipart uploads under the prefix started before the cutoff, counting their parts, and keeps the rest', async () => {
      const prefix = `leftovers/${randomUUID()}`;
      const target = await openS3Target({ endpoint: server.endpoint, bucket: BUCKET, prefix }, server.credentials);
      // A sibling prefix that starts with this one's name: another repository, not this one's.
      const neighbour = await openS3Target({ endpoint: server.endpoint, bucket: BUCKET, prefix: `${prefix}x` }, server.credentials);
      try {
        // Small pages, so that both listings page through the store's markers.
        const pages = { uploads: 0, parts: 0 };
        for (const t of [target, neighbour]) {
          t.client.middlewareStack.add(
            (next, context) => async (args) => {
              const input = args.input as { MaxUploads?: number; MaxParts?: number };
              if (context.commandName === 'ListMultipartUploadsCommand') (input.MaxUploads = 2), pages.uploads++;
              if (context.commandName === 'ListPartsCommand') (input.MaxParts = 1), pages.parts++;
              return next(args);
            },
            { step: 'initialize', name: 'smallPages' },
          );
        }
        const start = async (t: S3Target, key: string, parts: number[]) => {
          const Key = `${t.settings.root}${key}`;
          const { UploadId } = await t.client.send(new t.sdk.CreateMultipartUploadCommand({ Bucket: BUCKET, Key }));
          for (const [i, size] of parts.entries()) await t.client.send(new t.sdk.UploadPartCommand({ Bucket: BUCKET, Key, UploadId, PartNumber: i + 1, Body: randomBytes(size) }));
        };
        await start(target, 'data/aa/killed', [5 * MiB, 5 * MiB, 1234]);
        await start(target, 'index/killed', []);
        await start(target, 'snapshots/killed', [777]);
        await start(target, 'Not A Cairn Key', [10]);
        await start(neighbour, 'data/bb/other', [100]);
        // The server stamps Initiated in whole seconds: keep well clear of the cutoff on both sides.
        await sleep(1500);
        const cutoff = new Date();
        await sleep(1500);
        await start(target, 'data/cc/running', [1000]);
        const keys = async (t: S3Target) => (await t.listIncompleteUploads()).map((u) => u.key.slice(t.settings.root.length)).sort();
        expect(await keys(target)).toEqual(['data/aa/killed', 'data/cc/running', 'index/killed', 'snapshots/killed']);

        pages.uploads = pages.parts = 0;
        expect(await target.removeLeftovers(cutoff)).toEqual({ count: 3, bytes: 10 * MiB + 1234 + 777 });
        // Five uploads under the prefix, two a page; ListParts one part a page: three pages, then one and one (no parts still takes a request).
        expect(pages).toEqual({ uploads: 3, parts: 5 });
        expect(await keys(target)).toEqual(['data/cc/running']);
        expect(await keys(neighbour)).toEqual(['data/bb/other']);
        expect(await target.removeLeftovers(cutoff)).toEqual({ count: 0, bytes: 0 });
        // Once the cutoff passes it, the later one goes too; another program's upload under the prefix never does.
        expect(await target.removeLeftovers(new Date(Date.now() + 2000))).toEqual({ count: 1, bytes: 1000 });
        expect(await keys(target)).toEqual([]);
        const raw = await target.client.send(new target.sdk.ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: `${prefix}/` }));
        expect((raw.Uploads ?? []).map((u) => u.Key)).toEqual([`${prefix}/Not A Cairn Key`]);
        expect(await countObjects(target, '')).toBe(0);
      } finally {
        await target.client.send(new target.sdk.ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: 'leftovers/' })).then(
          (page) => Promise.all((page.Uploads ?? []).map((u) => target.client.send(new target.sdk.AbortMultipartUploadCommand({ Bucket: BUCKET, Key: u.Key, UploadId: u.UploadId })))),
          () => undefined,
        );
        await target.dispose();
        await neighbour.dispose();
      }
    });

    it.runIf(name === 's3rver')('removeLeftovers removes nothing on a store without ListMultipartUploads (s3rver answers 501), and prune goes through', async () => {
      const target = await openS3Target({ endpoint: server.endpoint, bucket: BUCKET, prefix: `leftovers/${randomUUID()}` }, server.credentials);
      try {
        expect(await target.removeLeftovers(new Date())).toEqual({ count: 0, bytes: 0 });
      } finally {
        await target.dispose();
      }
      const image = await makeImage(dir, 'no-uploads', 8 * MiB, MiB);
      const job = await writeS3Job(dir, server, image, {}, 'no-uploads.json');
      await cairnOk(['init', job], env());
      await cairnOk(['backup', job], env());
      const pruned = JSON.parse((await cairnOk(['prune', job, '--json'], env())).stdout);
      expect(pruned.leftoversRemoved).toBe(0);
    });
  });
}

async function countObjects(target: S3Target, prefix: string): Promise<number> {
  let count = 0;
  for await (const _ of target.list(prefix)) count++;
  return count;
}

describe('lazy loading', () => {
  it('a local backup never imports the AWS SDK; an S3 job does', async () => {
    const dir = await mkdtemp(join(work, 'lazy-'));
    const log = join(dir, 'sdk-imports.log');
    const hooks = join(dir, 'hooks.mjs');
    const register = join(dir, 'register.mjs');
    await writeFile(
      hooks,
      `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  if (result.url.includes('@aws-sdk')) appendFileSync(${JSON.stringify(log)}, result.url + '\\n');
  return result;
}
`,
    );
    await writeFile(register, `import { register } from 'node:module';\nregister(${JSON.stringify(`file://${hooks}`)});\n`);
    const image = await makeImage(dir, 'lazy', 8 * MiB, MiB);
    const job = join(dir, 'local.json');
    await writeFile(job, JSON.stringify({ name: 'lazy', source: { type: 'volume', path: image, mode: 'exact' }, target: { type: 'local', path: './repo' }, password: { env: 'CAIRN_PASSWORD' } }));
    for (const command of ['init', 'backup']) {
      const result = await cairn([command, job], {}, ['--import', register]);
      expect(result.exitCode, result.stderr).toBe(0);
    }
    await expect(readFile(log, 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });
    // The control: the hook does see the SDK when a job uses S3 (it fails, no server: that is fine).
    const s3Job = join(dir, 's3.json');
    await writeFile(s3Job, JSON.stringify({ name: 'lazy', source: { type: 'volume', path: image }, target: { type: 's3', bucket: 'lazy-bucket', endpoint: 'http://127.0.0.1:1', maxAttempts: 1, credentials: { accessKeyId: { env: 'CAIRN_PASSWORD' }, secretAccessKey: { env: 'CAIRN_PASSWORD' } } }, password: { env: 'CAIRN_PASSWORD' } }));
    const result = await cairn(['snapshots', s3Job], {}, ['--import', register]);
    expect(result.exitCode).toBe(1);
    expect(await readFile(log, 'utf8')).toContain('@aws-sdk/client-s3');
  });
});
