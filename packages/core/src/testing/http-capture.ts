import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request an HttpCapture received. */
export interface CapturedRequest {
  method: string;
  /** Path and query. */
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A real HTTP server on 127.0.0.1 that records every request (for notifier tests). */
export interface HttpCapture {
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  readonly url: string;
  readonly requests: CapturedRequest[];
  /** The status of the next answers (default 200). */
  status: number;
  /** Leave requests unanswered (a server that hangs). */
  silent: boolean;
  /** Resolves once `count` requests have arrived (rejects after `timeoutMs`, naming what did arrive). */
  waitFor(count: number, timeoutMs?: number): Promise<CapturedRequest[]>;
  /** Stops the server, dropping open connections. */
  close(): Promise<void>;
}

/** Starts an HttpCapture on a free port; close it in the test's teardown. */
export async function startHttpCapture(): Promise<HttpCapture> {
  const requests: CapturedRequest[] = [];
  const waiters = new Set<() => void>();
  const state = { status: 200, silent: false };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      for (const wake of waiters) wake();
      if (state.silent) return;
      res.writeHead(state.status, { 'content-type': 'text/plain' }).end(state.status < 300 ? 'OK' : `refused with ${state.status}`);
    });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    requests,
    get status() {
      return state.status;
    },
    set status(value) {
      state.status = value;
    },
    get silent() {
      return state.silent;
    },
    set silent(value) {
      state.silent = value;
    },
    waitFor: (count, timeoutMs = 10_000) => waitForRequests(requests, waiters, count, timeoutMs),
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

function waitForRequests(requests: CapturedRequest[], waiters: Set<() => void>, count: number, timeoutMs: number): Promise<CapturedRequest[]> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (requests.length < count) return;
      done();
      resolve(requests);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`Expected ${count} request(s) within ${timeoutMs} ms, got ${requests.length}: ${requests.map((r) => `${r.method} ${r.url}`).join(', ')}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      waiters.delete(check);
    };
    waiters.add(check);
    check();
  });
}
