import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DirectReads, type SignedGet } from './direct-reads.js';

const OBJECT = randomBytes(3 * 65536 + 777);
const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/** A GET of `length` bytes at `offset` as the SDK would sign it (the headers are only passed on). */
function get(port: number, offset: number, length: number, protocol = 'http:'): SignedGet {
  return {
    method: 'GET', protocol, hostname: '127.0.0.1', port, path: '/bucket/key', query: { 'x-id': 'GetObject' },
    headers: { host: `127.0.0.1:${port}`, range: `bytes=${offset}-${offset + length - 1}`, authorization: 'AWS4-HMAC-SHA256 test' },
  };
}

/** Buffers of the given sizes, to be filled in turn. */
const buffers = (...sizes: number[]) => sizes.map((size) => new Uint8Array(size));
const joined = (into: Uint8Array[]) => Buffer.concat(into);

/** A real HTTP server on 127.0.0.1 answering Range requests on OBJECT as S3 does; `reply` may answer otherwise. */
async function rangeServer(reply?: (req: IncomingMessage, res: ServerResponse) => boolean) {
  const seen = { connections: 0, requests: [] as Array<{ url: string; range: string; authorization: string }> };
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    seen.requests.push({ url: req.url ?? '', range: req.headers.range ?? '', authorization: req.headers.authorization ?? '' });
    if (reply?.(req, res)) return;
    answerRange(req, res);
  };
  const server = createHttpServer(handler);
  server.on('connection', () => seen.connections++);
  const port = await listen(server);
  return { port, seen, server };
}

function answerRange(req: IncomingMessage, res: ServerResponse): void {
  const [, from, to] = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '') ?? [];
  const start = Number(from);
  const end = Math.min(Number(to), OBJECT.length - 1);
  res.writeHead(206, { 'content-length': String(end - start + 1), 'content-range': `bytes ${start}-${end}/${OBJECT.length}` });
  res.end(OBJECT.subarray(start, end + 1));
}

async function listen(server: Server | ReturnType<typeof createTcpServer>): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  stops.push(async () => {
    if ('closeAllConnections' in server) server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return (server.address() as AddressInfo).port;
}

function reads(timeoutMs = 10_000, tls?: { ca: Buffer }) {
  const direct = new DirectReads(timeoutMs, tls);
  stops.push(async () => direct.close());
  return direct;
}

describe('DirectReads', () => {
  it('fills the buffers in turn with the range, over one kept-alive connection, sending the signed request as it is', async () => {
    const { port, seen } = await rangeServer();
    const direct = reads();
    const into = buffers(1000, 0, 70_000, 5);
    expect(await direct.readInto(get(port, 12_345, 71_005), 12_345, into)).toBeNull();
    expect(joined(into).equals(OBJECT.subarray(12_345, 12_345 + 71_005))).toBe(true);
    const again = buffers(OBJECT.length);
    expect(await direct.readInto(get(port, 0, OBJECT.length), 0, again)).toBeNull();
    expect(joined(again).equals(OBJECT)).toBe(true);
    expect(seen.connections).toBe(1);
    expect(seen.requests).toEqual([
      { url: '/bucket/key?x-id=GetObject', range: 'bytes=12345-83349', authorization: 'AWS4-HMAC-SHA256 test' },
      { url: '/bucket/key?x-id=GetObject', range: `bytes=0-${OBJECT.length - 1}`, authorization: 'AWS4-HMAC-SHA256 test' },
    ]);
  });

  it('sends the path as it is and escapes the query as smithy does', async () => {
    const { port, seen } = await rangeServer();
    const request = { ...get(port, 10, 10), path: '/bucket/a%20b' };
    request.query = { 'x-id': 'GetObject', "weird key!": "v'(*)", flag: null };
    expect(await reads().readInto(request, 10, buffers(10))).toBeNull();
    expect(seen.requests[0]).toMatchObject({ url: "/bucket/a%20b?flag&weird%20key%21=v%27%28%2A%29&x-id=GetObject", range: 'bytes=10-19' });
  });

  it('reads as many ranges at once as it is asked, one connection each', async () => {
    const { port, seen } = await rangeServer();
    const direct = reads();
    const all = await Promise.all([0, 1, 2, 3].map(async (k) => {
      const into = buffers(15_000, 25_000);
      return { reason: await direct.readInto(get(port, k * 40_000, 40_000), k * 40_000, into), bytes: joined(into) };
    }));
    all.forEach(({ reason, bytes }, k) => {
      expect(reason).toBeNull();
      expect(bytes.equals(OBJECT.subarray(k * 40_000, (k + 1) * 40_000))).toBe(true);
    });
    expect(seen.connections).toBe(4);
  });

  it('connects to an IPv6 literal, which smithy gives in brackets', async () => {
    const server = createHttpServer(answerRange);
    await new Promise<void>((resolve) => server.listen(0, '::1', resolve));
    stops.push(async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });
    const { port } = server.address() as AddressInfo;
    const into = buffers(100);
    expect(await reads().readInto({ ...get(port, 7, 100), hostname: '[::1]' }, 7, into)).toBeNull();
    expect(joined(into).equals(OBJECT.subarray(7, 107))).toBe(true);
  });

  it('takes headers and body however the bytes are split into reads', async () => {
    const server = createTcpServer((socket) => {
      socket.once('data', async () => {
        const body = OBJECT.subarray(100, 300);
        const response = Buffer.concat([Buffer.from(`HTTP/1.1 206 Partial Content\r\nContent-Length: 200\r\nContent-Range: bytes 100-299/${OBJECT.length}\r\n\r\n`), body]);
        for (let at = 0; at < response.length; at += 7) {
          socket.write(response.subarray(at, at + 7));
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
      });
    });
    const port = await listen(server);
    const into = buffers(3, 197);
    expect(await reads().readInto(get(port, 100, 200), 100, into)).toBeNull();
    expect(joined(into).equals(OBJECT.subarray(100, 300))).toBe(true);
  });

  it('takes an HTTP/1.0 answer but does not reuse its connection', async () => {
    let connections = 0;
    const server = createTcpServer((socket) => {
      connections++;
      socket.once('data', () => socket.end(Buffer.concat([Buffer.from(`HTTP/1.0 206 Partial Content\r\nContent-Length: 10\r\nContent-Range: bytes 0-9/${OBJECT.length}\r\n\r\n`), OBJECT.subarray(0, 10)])));
    });
    const port = await listen(server);
    const direct = reads();
    for (let k = 0; k < 2; k++) {
      const into = buffers(10);
      expect(await direct.readInto(get(port, 0, 10), 0, into)).toBeNull();
      expect(joined(into).equals(OBJECT.subarray(0, 10))).toBe(true);
    }
    expect(connections).toBe(2);
  });

  it('gives the reason and keeps no connection for any answer other than the exact 206 asked for', async () => {
    const answers: Record<string, (res: ServerResponse) => void> = {
      'status 404': (res) => res.writeHead(404, { 'content-type': 'application/xml' }).end('<Error><Code>NoSuchKey</Code></Error>'),
      'status 200': (res) => res.writeHead(200, { 'content-length': '10' }).end(OBJECT.subarray(0, 10)),
      'transfer-encoding chunked': (res) => {
        res.writeHead(206, { 'content-range': `bytes 0-9/${OBJECT.length}`, 'transfer-encoding': 'chunked' });
        res.end(OBJECT.subarray(0, 10));
      },
      'content-length 9 for 10 bytes': (res) => res.writeHead(206, { 'content-length': '9', 'content-range': `bytes 0-8/${OBJECT.length}` }).end(OBJECT.subarray(0, 9)),
      'content-range bytes 1-10': (res) => res.writeHead(206, { 'content-length': '10', 'content-range': `bytes 1-10/${OBJECT.length}` }).end(OBJECT.subarray(1, 11)),
    };
    for (const [reason, answer] of Object.entries(answers)) {
      const { port, seen } = await rangeServer((_req, res) => (answer(res), true));
      const direct = reads();
      expect(await direct.readInto(get(port, 0, 10), 0, buffers(10)), reason).toMatch(new RegExp(`^${reason}`));
      expect(await direct.readInto(get(port, 0, 10), 0, buffers(10))).toMatch(new RegExp(`^${reason}`));
      expect(seen.connections, reason).toBe(2);
    }
  });

  it('gives a reason, not a hang, when the connection drops mid-body or nothing answers in time', async () => {
    const { port } = await rangeServer((_req, res) => {
      res.writeHead(206, { 'content-length': '100', 'content-range': `bytes 0-99/${OBJECT.length}` });
      res.write(OBJECT.subarray(0, 50), () => res.socket?.destroy());
      return true;
    });
    expect(await reads().readInto(get(port, 0, 100), 0, buffers(100))).toMatch(/closed/);
    const { port: silent } = await rangeServer(() => true);
    expect(await reads(300).readInto(get(silent, 0, 100), 0, buffers(100))).toBe('no answer in time');
    const gone = createTcpServer();
    const goneAt = await new Promise<number>((resolve) => gone.listen(0, '127.0.0.1', () => resolve((gone.address() as AddressInfo).port)));
    await new Promise((resolve) => gone.close(resolve));
    expect(await reads().readInto(get(goneAt, 0, 10), 0, buffers(10))).toMatch(/^connection: .*ECONNREFUSED/);
  });

  it('does not reuse a connection the server said it would close, or one the server closed while idle', async () => {
    const { port, seen } = await rangeServer((req, res) => {
      if (seen.requests.length === 1) res.setHeader('connection', 'close');
      // The second answer's connection is closed by the server a moment after, while it is idle.
      if (seen.requests.length === 2) res.on('finish', () => setTimeout(() => req.socket.end(), 50));
      answerRange(req, res);
      return true;
    });
    const direct = reads();
    expect(await direct.readInto(get(port, 0, 10), 0, buffers(10))).toBeNull();
    expect(await direct.readInto(get(port, 0, 10), 0, buffers(10))).toBeNull();
    expect(seen.connections).toBe(2);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await direct.readInto(get(port, 0, 10), 0, buffers(10))).toBeNull();
    expect(await direct.readInto(get(port, 0, 10), 0, buffers(10))).toBeNull();
    expect(seen.connections).toBe(3);
  });

  it('after close, reads in progress and new ones give up at once', async () => {
    const { port } = await rangeServer(() => true);
    const direct = reads();
    const pending = direct.readInto(get(port, 0, 10), 0, buffers(10));
    await new Promise((resolve) => setTimeout(resolve, 50));
    direct.close();
    expect(await pending).toMatch(/closed/);
    expect(await direct.readInto(get(port, 0, 10), 0, buffers(10))).toBe('closed');
  });

  it('refuses what cannot be sent as it is: another method, a line break in a header', async () => {
    const direct = reads();
    expect(await direct.readInto({ ...get(1, 0, 1), method: 'PUT' }, 0, buffers(1))).toBe('method PUT');
    expect(await direct.readInto({ ...get(1, 0, 1), headers: { 'x-evil': 'a\r\nb' } }, 0, buffers(1))).toMatch(/line break/);
    expect(await direct.readInto({ ...get(1, 0, 1), protocol: 'ftp:' }, 0, buffers(1))).toBe('protocol ftp:');
  });

  it('reads over TLS, checking the certificate', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-direct-tls-'));
    stops.push(async () => rmSync(dir, { recursive: true, force: true }));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    const cert = readFileSync(join(dir, 'cert.pem'));
    const server = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert }, answerRange);
    const port = await listen(server);
    const request = get(port, 5, 65_536, 'https:');
    const into = buffers(65_536);
    expect(await reads(10_000, { ca: cert }).readInto(request, 5, into)).toBeNull();
    expect(joined(into).equals(OBJECT.subarray(5, 65_541))).toBe(true);
    expect(await reads().readInto(request, 5, buffers(65_536))).toMatch(/^connection: .*self.signed/i);
  });
});
