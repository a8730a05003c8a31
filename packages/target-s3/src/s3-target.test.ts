import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TargetError } from '@cairn/core';
import { createTestPluginContext } from '@cairn/core/testing';
import { activate } from './index.js';
import { applyDefaults, S3Target, s3TargetFactory } from './s3-target.js';
import { openS3Target } from './testing.js';

const MiB = 1024 * 1024;
const BUCKET = 'cairn-unit';
const CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

let s3rver: ChildProcess | undefined;
let s3rverDir: string;
let s3rverEndpoint: string;

// s3rver runs in its own process: its continuation tokens use a cipher that OpenSSL 3 only has in the legacy provider.
beforeAll(async () => {
  s3rverDir = await mkdtemp(join(tmpdir(), 'cairn-s3rver-'));
  const port = await new Promise<number>((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
  const bin = createRequire(import.meta.url).resolve('s3rver/bin/s3rver.js');
  s3rver = spawn(process.execPath, ['--openssl-legacy-provider', bin, '-d', s3rverDir, '-a', '127.0.0.1', '-p', String(port), '--silent', '--configure-bucket', BUCKET], { stdio: 'ignore' });
  s3rverEndpoint = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      await fetch(s3rverEndpoint);
      break;
    } catch (err) {
      if (i > 200) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
});

afterAll(async () => {
  if (s3rver?.pid && s3rver.exitCode === null) {
    const exited = new Promise((resolve) => s3rver!.once('exit', resolve));
    process.kill(s3rver.pid, 'SIGTERM');
    await exited;
  }
  await rm(s3rverDir, { recursive: true, force: true });
});

// The conformance suite runs against Ceph RGW and s3rver in test/s3 (the repository's e2e tests).

describe('S3Target on s3rver', () => {
  it('uploads a large object in parts and reads it back whole and in ranges', async () => {
    const target = await openS3Target({ endpoint: s3rverEndpoint, bucket: BUCKET, prefix: 'multipart', multipartThresholdMiB: 5, partSizeMiB: 5, uploadConcurrency: 3 }, CREDENTIALS);
    try {
      const data = randomBytes(17 * MiB + 123);
      await target.put('data/aa/large', data);
      expect(await target.stat('data/aa/large')).toEqual({ key: 'data/aa/large', size: data.length });
      expect(Buffer.compare(await target.get('data/aa/large'), data)).toBe(0);
      const range = { offset: 5 * MiB - 10, length: 20 };
      expect(Buffer.compare(await target.get('data/aa/large', range), data.subarray(range.offset, range.offset + range.length))).toBe(0);
    } finally {
      await target.dispose();
    }
  });

  it('reads ranges straight into the buffers over its own connections, signed by the SDK', async () => {
    const target = await openS3Target({ endpoint: s3rverEndpoint, bucket: BUCKET, prefix: 'direct' }, CREDENTIALS);
    try {
      const data = randomBytes(3 * MiB);
      await target.put('data/ab/pack', data);
      const into = [new Uint8Array(MiB), new Uint8Array(0), new Uint8Array(MiB + 17)];
      await target.readInto('data/ab/pack', 12_345, into);
      expect(Buffer.concat(into).equals(data.subarray(12_345, 12_345 + 2 * MiB + 17))).toBe(true);
      expect(target.directReadStats).toEqual({ direct: 1, fallback: 0, lastFallback: '' });
      await expect(target.readInto('data/ab/missing', 0, [new Uint8Array(10)])).rejects.toSatisfy((err) => target.isNotFound(err));
      expect(target.directReadStats).toMatchObject({ direct: 1, fallback: 1, lastFallback: 'status 404' });
    } finally {
      await target.dispose();
    }
  });

  it('keeps the prefix out of the keys it lists and apart from other prefixes', async () => {
    const a = await openS3Target({ endpoint: s3rverEndpoint, bucket: BUCKET, prefix: 'hosts/a' }, CREDENTIALS);
    const b = await openS3Target({ endpoint: s3rverEndpoint, bucket: BUCKET, prefix: 'hosts/ab' }, CREDENTIALS);
    try {
      await a.put('config', Buffer.from('a'));
      await b.put('config', Buffer.from('b'));
      const keys = [];
      for await (const info of a.list('')) keys.push(info.key);
      expect(keys).toEqual(['config']);
      expect(a.location).toBe(`s3://${BUCKET}/hosts/a/ at ${s3rverEndpoint}`);
    } finally {
      await a.dispose();
      await b.dispose();
    }
  });

  it('reports a missing bucket with its name and the endpoint, not as a missing object', async () => {
    const target = await openS3Target({ endpoint: s3rverEndpoint, bucket: 'no-such-bucket' }, CREDENTIALS);
    try {
      for (const call of [() => target.stat('config'), () => target.get('config'), () => target.put('config', Buffer.from('x')), () => target.list('')[Symbol.asyncIterator]().next()]) {
        const error = await call().catch((err: unknown) => err);
        expect(error).toBeInstanceOf(TargetError);
        expect(target.isNotFound(error)).toBe(false);
        expect((error as Error).message).toContain(`bucket 'no-such-bucket' at ${s3rverEndpoint} does not exist`);
      }
    } finally {
      await target.dispose();
    }
  });

  it('removeLeftovers removes nothing where the store cannot list unfinished uploads (s3rver answers 501)', async () => {
    const target = await openS3Target({ endpoint: s3rverEndpoint, bucket: BUCKET, prefix: 'leftovers' }, CREDENTIALS);
    try {
      expect(await target.removeLeftovers(new Date())).toEqual({ count: 0, bytes: 0 });
    } finally {
      await target.dispose();
    }
  });

  it('rejects keys outside the key alphabet', async () => {
    const target = await openS3Target({ endpoint: s3rverEndpoint, bucket: BUCKET }, CREDENTIALS);
    try {
      for (const key of ['../x', '/etc/passwd', 'data//x', '', 'Data/x', 'data/', 'a b']) {
        await expect(target.put(key, Buffer.from('x')), key).rejects.toBeInstanceOf(TargetError);
      }
    } finally {
      await target.dispose();
    }
  });
});

/** A tiny S3 impostor: answers each request with the next scripted reply and records what it saw. */
class ScriptedServer {
  readonly requests: Array<{ method: string; url: string }> = [];
  #server: Server | undefined;
  endpoint = '';
  constructor(readonly reply: (req: IncomingMessage, res: ServerResponse, index: number) => void) {}

  async start(): Promise<void> {
    this.#server = createServer((req, res) => {
      const index = this.requests.length;
      this.requests.push({ method: req.method ?? '', url: req.url ?? '' });
      req.resume();
      req.on('end', () => this.reply(req, res, index));
    });
    await new Promise<void>((resolve) => this.#server!.listen(0, '127.0.0.1', resolve));
    this.endpoint = `http://127.0.0.1:${(this.#server!.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.#server?.closeAllConnections();
    await new Promise((resolve) => this.#server?.close(resolve));
  }
}

function s3Error(res: ServerResponse, status: number, code: string, message = code): void {
  res.writeHead(status, { 'content-type': 'application/xml' });
  res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message><RequestId>1</RequestId></Error>`);
}

async function withServer(reply: ConstructorParameters<typeof ScriptedServer>[0], run: (server: ScriptedServer, target: S3Target, delays: number[]) => Promise<void>, settings: Record<string, unknown> = {}): Promise<void> {
  const server = new ScriptedServer(reply);
  await server.start();
  const delays: number[] = [];
  const target = await openS3Target({ endpoint: server.endpoint, bucket: 'bkt', maxAttempts: 4, abortIncompleteUploadsAfterHours: 0, ...settings }, CREDENTIALS, {
    sleep: async (ms) => void delays.push(ms),
    random: () => 1,
  });
  try {
    await run(server, target, delays);
  } finally {
    await target.dispose();
    await server.stop();
  }
}

describe('retries', () => {
  it('retries 503 SlowDown with exponential backoff, then succeeds', async () => {
    await withServer(
      (_req, res, i) => (i < 3 ? s3Error(res, 503, 'SlowDown', 'Please reduce your request rate.') : res.writeHead(200, { etag: '"x"' }).end()),
      async (server, target, delays) => {
        await target.put('config', Buffer.from('x'));
        expect(server.requests.map((r) => r.method)).toEqual(['PUT', 'PUT', 'PUT', 'PUT']);
        expect(delays).toEqual([200, 400, 800]);
      },
    );
  });

  it('draws each delay at random below the exponential bound (full jitter)', async () => {
    const server = new ScriptedServer((_req, res, i) => (i < 2 ? s3Error(res, 500, 'InternalError') : res.writeHead(200, { etag: '"x"' }).end()));
    await server.start();
    const delays: number[] = [];
    const target = await openS3Target({ endpoint: server.endpoint, bucket: 'bkt', abortIncompleteUploadsAfterHours: 0 }, CREDENTIALS, { sleep: async (ms) => void delays.push(ms), random: () => 0.25 });
    try {
      await target.put('config', Buffer.from('x'));
      expect(delays).toEqual([50, 100]);
    } finally {
      await target.dispose();
      await server.stop();
    }
  });

  it('retries a dropped connection and a 5xx on get', async () => {
    await withServer(
      (req, res, i) => {
        if (i === 0) return req.socket.destroy();
        if (i === 1) return s3Error(res, 502, 'BadGateway');
        res.writeHead(200, { 'content-length': '5' }).end('hello');
      },
      async (server, target) => {
        expect((await target.get('config')).toString()).toBe('hello');
        expect(server.requests).toHaveLength(3);
      },
    );
  });

  it('reads a range again through the SDK when the direct read fails, and stops reading directly after four such reads in a row', async () => {
    const body = randomBytes(100);
    await withServer(
      (req, res, i) => {
        res.writeHead(206, { 'content-length': '100', 'content-range': 'bytes 0-99/100' });
        // The direct reads (every other request until it gives up) are cut short.
        if (i % 2 === 0 && i < 8) res.write(body.subarray(0, 40), () => req.socket.destroy());
        else res.end(body);
      },
      async (server, target) => {
        for (let k = 0; k < 5; k++) {
          const into = [new Uint8Array(60), new Uint8Array(40)];
          await target.readInto('data/aa/pack', 0, into);
          expect(Buffer.concat(into).equals(body)).toBe(true);
        }
        expect(server.requests).toHaveLength(9);
        expect(target.directReadStats).toMatchObject({ direct: 0, fallback: 4, lastFallback: expect.stringMatching(/closed/) });
      },
    );
  });

  it('gives up after maxAttempts with a message naming bucket, endpoint and attempts', async () => {
    await withServer(
      (_req, res) => s3Error(res, 503, 'SlowDown', 'Please reduce your request rate.'),
      async (server, target) => {
        const error = await target.put('config', Buffer.from('x')).catch((err: unknown) => err);
        expect(error).toBeInstanceOf(TargetError);
        expect((error as Error).message).toBe(`Cannot upload 'config' in bucket 'bkt' at ${server.endpoint}: gave up after 4 attempts (SlowDown, HTTP 503: Please reduce your request rate.)`);
        expect(server.requests).toHaveLength(4);
      },
    );
  });

  it.each([
    ['InvalidAccessKeyId', 403, /S3 refused the credentials for bucket 'bkt' at http:\/\/127\.0\.0\.1:\d+: cannot upload 'config' \(InvalidAccessKeyId, HTTP 403/],
    ['SignatureDoesNotMatch', 403, /S3 refused the credentials for bucket 'bkt'/],
    ['NoSuchBucket', 404, /The bucket 'bkt' at http:\/\/127\.0\.0\.1:\d+ does not exist/],
    ['InvalidArgument', 400, /Cannot upload 'config' in bucket 'bkt' at .* \(InvalidArgument, HTTP 400/],
  ])('does not retry %s (%i) and says so clearly', async (code, status, message) => {
    await withServer(
      (_req, res) => s3Error(res, status, code),
      async (server, target, delays) => {
        const error = await target.put('config', Buffer.from('x')).catch((err: unknown) => err);
        expect(error).toBeInstanceOf(TargetError);
        expect((error as Error).message).toMatch(message);
        expect(server.requests).toHaveLength(1);
        expect(delays).toEqual([]);
      },
    );
  });

  it.each([
    [403, true],
    [404, false],
  ])('tells a missing object from a missing bucket after a bare 404 (HeadBucket answers %i)', async (bucketStatus, objectMissing) => {
    await withServer(
      (req, res) => {
        const path = new URL(req.url ?? '/', 'http://x').pathname;
        res.writeHead(path === '/bkt' || path === '/bkt/' ? bucketStatus : 404).end();
      },
      async (server, target) => {
        const error = await target.stat('config').catch((err: unknown) => err);
        expect(target.isNotFound(error)).toBe(objectMissing);
        if (!objectMissing) expect((error as Error).message).toContain(`The bucket 'bkt' at ${server.endpoint} does not exist`);
        expect(server.requests.map((r) => r.method)).toEqual(['HEAD', 'HEAD']);
      },
    );
  });

  it('aborts a multipart upload whose part fails, leaving no object', async () => {
    await withServer(
      (req, res) => {
        const url = new URL(req.url ?? '/', 'http://x');
        if (req.method === 'POST' && url.searchParams.has('uploads')) {
          res.writeHead(200, { 'content-type': 'application/xml' });
          return res.end('<InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>data/aa/big</Key><UploadId>U1</UploadId></InitiateMultipartUploadResult>');
        }
        if (req.method === 'PUT' && url.searchParams.get('partNumber') === '2') return s3Error(res, 400, 'InvalidPart');
        if (req.method === 'PUT') return res.writeHead(200, { etag: '"p"' }).end();
        if (req.method === 'DELETE') return res.writeHead(204).end();
        s3Error(res, 400, 'Unexpected');
      },
      async (server, target) => {
        const error = await target.put('data/aa/big', Buffer.alloc(12 * MiB)).catch((err: unknown) => err);
        expect((error as Error).message).toMatch(/upload part 2\/3 of 'data\/aa\/big'.*InvalidPart/);
        const methods = server.requests.map((r) => `${r.method} ${new URL(r.url, 'http://x').search}`);
        expect(methods[0]).toBe('POST ?uploads=');
        expect(methods.at(-1)).toMatch(/^DELETE \?uploadId=U1/);
        expect(methods.some((m) => m.startsWith('POST ?uploadId'))).toBe(false); // never completed
      },
      { multipartThresholdMiB: 5, partSizeMiB: 5, uploadConcurrency: 1, abortIncompleteUploadsAfterHours: 0 },
    );
  });
});

describe('settings', () => {
  it('defaults suit AWS without an endpoint and S3-compatible stores with one', () => {
    expect(applyDefaults({ type: 's3', bucket: 'b' })).toMatchObject({ root: '', region: undefined, forcePathStyle: false, checksums: 'when-supported', partSize: 16 * MiB, multipartThreshold: 64 * MiB, maxAttempts: 8, uploadConcurrency: 4 });
    expect(applyDefaults({ type: 's3', bucket: 'b', endpoint: 'http://rgw:7480/', prefix: '/laptop/' })).toMatchObject({ root: 'laptop/', region: 'us-east-1', endpoint: 'http://rgw:7480', forcePathStyle: true, checksums: 'when-required' });
    expect(applyDefaults({ type: 's3', bucket: 'b', endpoint: 'http://x', forcePathStyle: false, checksums: 'when-supported' })).toMatchObject({ forcePathStyle: false, checksums: 'when-supported' });
  });

  it('reads credentials through readSecret, never from the job file itself', async () => {
    const asked: string[] = [];
    const target = (await s3TargetFactory.create(
      { type: 's3', bucket: 'b', endpoint: 'http://127.0.0.1:1', credentials: { accessKeyId: { env: 'KEY' }, secretAccessKey: { file: 'secret' } } },
      { baseDir: '/', readSecret: async (ref, what) => (asked.push(`${JSON.stringify(ref)} ${what}`), 'env' in ref ? 'AKID\n' : 'SECRET\n') },
    )) as S3Target;
    try {
      expect(asked).toEqual(['{"env":"KEY"} S3 access key id', '{"file":"secret"} S3 secret access key']);
      expect(await target.client.config.credentials()).toMatchObject({ accessKeyId: 'AKID', secretAccessKey: 'SECRET' });
      expect(await target.client.config.requestChecksumCalculation()).toBe('WHEN_REQUIRED');
    } finally {
      await target.dispose();
    }
  });
});

describe('activate', () => {
  it('registers the s3 target factory and unregisters it on dispose', async () => {
    const context = await createTestPluginContext(fileURLToPath(new URL('..', import.meta.url)));
    await activate(context);
    expect(context.targets.get('s3')).toBe(s3TargetFactory);
    await context.subscriptions.dispose();
    expect(context.targets.types()).toEqual([]);
  });
});
