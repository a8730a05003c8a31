import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { UsageError, describeSystemError } from '../../errors.js';
import type { Logger } from '../../services.js';
import { statusView } from '../../cli/commands/status.js';
import { ROUTES, type ApiServices } from './api.js';
import type { DashboardEvents } from './dashboard.js';
import { streamEvents } from './events-stream.js';
import { HttpError } from './http-error.js';
import { crossSiteProblem, foreignHost, isAuthenticated, ownOrigins, sessionCookie, setSecurityHeaders } from './security.js';
import { page, sendHtml, serveStatic } from './static-files.js';
import { isLoopback, originOf, type WebListenOptions } from './web-address.js';

export interface WebServerOptions {
  listen: WebListenOptions;
  token: string;
  services: ApiServices;
  events: DashboardEvents;
  /** The folder of the dashboard's built files (the first `webApps` contribution), if a plugin gives one. */
  appRoot?: string;
  logger: Logger;
}

export interface WebServer {
  /** `http://127.0.0.1:8780`, with the port chosen when 0 was asked. */
  readonly url: string;
  dispose(): Promise<void>;
}

/** Requests with a larger body are refused: the API's bodies are a few fields. */
const MAX_BODY_BYTES = 64 * 1024;

/** Starts the dashboard's server: the web app at `/`, the API under `/api/`, everything behind the token. */
export async function startWebServer(options: WebServerOptions): Promise<WebServer> {
  const tls = options.listen.tls && (await readTls(options.listen.tls));
  const streams = new Set<() => void>();
  let origin = '';
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res, { ...options, origin, streams, secure: Boolean(tls) }).catch((err) => {
      options.logger.error(`web request ${req.method} ${req.url} failed: ${(err as Error).message}`);
      if (!res.headersSent) sendJson(res, 500, { error: { code: 'CAIRN_INTERNAL', message: (err as Error).message } });
      else res.end();
    });
  };
  const server: Server = tls ? createHttpsServer(tls, handler) : createHttpServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new UsageError(`Cannot serve the dashboard on ${options.listen.host}:${options.listen.port}: ${describeSystemError(err)}`, { cause: err })));
    server.listen(options.listen.port, options.listen.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  origin = originOf(options.listen.host, port, Boolean(tls));
  return {
    url: origin,
    async dispose() {
      for (const close of streams) close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function readTls(files: { certFile: string; keyFile: string }): Promise<{ cert: Buffer; key: Buffer }> {
  try {
    return { cert: await readFile(files.certFile), key: await readFile(files.keyFile) };
  } catch (err) {
    throw new UsageError(`Cannot read the dashboard's TLS certificate or key: ${describeSystemError(err)}`, { cause: err });
  }
}

interface RequestContext extends WebServerOptions {
  origin: string;
  streams: Set<() => void>;
  secure: boolean;
}

async function handle(req: IncomingMessage, res: ServerResponse, context: RequestContext): Promise<void> {
  const url = new URL(req.url ?? '/', context.origin);
  // A request refused before its body is read still has it read (and dropped): the client gets the answer, not a reset connection.
  res.once('finish', () => req.resume());
  const api = url.pathname === '/api' || url.pathname.startsWith('/api/');
  setSecurityHeaders(res, api);
  const remote = !isLoopback(context.listen.host);
  if (foreignHost(req, context.origin, remote)) return sendJson(res, 403, { error: { code: 'CAIRN_CROSS_SITE', message: `Refused: the request names the server ${req.headers.host}, not ${new URL(context.origin).host}` } });
  if (!api && url.searchParams.has('token')) return login(url, res, context);
  if (!isAuthenticated(req, context.token)) {
    if (api) return sendJson(res, 401, { error: { code: 'CAIRN_UNAUTHORIZED', message: 'This request needs the dashboard token: open the address `cairn ui` prints, or send Authorization: Bearer TOKEN' } });
    return sendHtml(res, 401, page('cairn dashboard', '<p>This page needs the dashboard token: open the address <code>cairn ui</code> prints.</p>'));
  }
  const refusal = crossSiteProblem(req, ownOrigins(req, context.origin, remote, context.secure));
  if (refusal) return sendJson(res, 403, { error: { code: 'CAIRN_CROSS_SITE', message: `Refused as a possible cross-site request: ${refusal}` } });
  if (api) return handleApi(req, res, url, context);
  if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { error: { code: 'CAIRN_METHOD', message: `${req.method} is not allowed here` } });
  if (!context.appRoot) return sendHtml(res, 200, page('cairn daemon', '<p>No dashboard plugin is enabled (a <code>webApps</code> contribution); the API is at <a href="/api/status">/api/</a>.</p>'));
  return serveStatic(context.appRoot, url.pathname, res, req.method === 'HEAD');
}

/** `/?token=…`: a right token becomes the session cookie, and the address loses the token (out of the history and the screen). */
function login(url: URL, res: ServerResponse, context: RequestContext): void {
  if (url.searchParams.get('token') !== context.token) return sendHtml(res, 401, page('cairn dashboard', '<p>The token in this address is not the dashboard\'s: open the address <code>cairn ui</code> prints.</p>'));
  url.searchParams.delete('token');
  res.writeHead(303, { 'Set-Cookie': sessionCookie(context.token, context.secure), Location: url.pathname + url.search });
  res.end();
}

async function handleApi(req: IncomingMessage, res: ServerResponse, url: URL, context: RequestContext): Promise<void> {
  const { services } = context;
  if (url.pathname === '/api/events' && req.method === 'GET') {
    const view = (state: typeof services.backend.state) => statusView(state, services.backend.stateDir, undefined, true);
    const close = streamEvents(req, res, context.events, view, view(services.backend.state));
    context.streams.add(close);
    req.once('close', () => context.streams.delete(close));
    return;
  }
  const matching = ROUTES.filter((r) => r.pattern.test(url.pathname));
  const route = matching.find((r) => r.method === req.method || (r.method === 'GET' && req.method === 'HEAD'));
  try {
    if (!route) throw matching.length > 0 ? new HttpError(405, 'CAIRN_METHOD', `${req.method} is not allowed on ${url.pathname}`) : new HttpError(404, 'CAIRN_NOT_FOUND', `No API at ${url.pathname}`);
    const params = route.pattern.exec(url.pathname)!.slice(1).map(decodeSegment);
    const response = await route.handler(services, { method: req.method!, params, query: url.searchParams, body: () => readJsonBody(req) });
    sendJson(res, response.status, response.body);
  } catch (err) {
    if (!(err instanceof HttpError)) throw err;
    sendJson(res, err.status, { error: { code: err.code, message: err.message } });
  }
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, 'CAIRN_USAGE', `Bad escape in the path segment "${segment}"`);
  }
}

async function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HttpError(400, 'CAIRN_USAGE', `The request body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new HttpError(400, 'CAIRN_USAGE', 'The request body is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new HttpError(400, 'CAIRN_USAGE', 'The request body must be a JSON object');
  return value as Record<string, unknown>;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}
