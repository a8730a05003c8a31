import type { IncomingMessage, ServerResponse } from 'node:http';
import { tokenMatches } from './web-token.js';

export const SESSION_COOKIE = 'cairn_session';
/** The header every state-changing request carries: a page of another site cannot send it without a CORS preflight, which is never approved. */
export const REQUEST_HEADER = 'x-cairn-request';

/** Headers of every response: the page loads only its own files and leaks no address. */
export function setSecurityHeaders(res: ServerResponse, api: boolean): void {
  res.setHeader('Content-Security-Policy', "default-src 'self'");
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('X-Frame-Options', 'DENY');
  if (api) res.setHeader('Cache-Control', 'no-store');
}

/** The session cookie or an `Authorization: Bearer` header holds the token. */
export function isAuthenticated(req: IncomingMessage, token: string): boolean {
  const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
  if (bearer !== undefined) return tokenMatches(bearer, token);
  return tokenMatches(cookieValue(req.headers.cookie, SESSION_COOKIE), token);
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return value.join('=');
  }
  return undefined;
}

/** `Set-Cookie` of the session: not readable by scripts, never sent by another site's requests. */
export function sessionCookie(token: string, secure: boolean): string {
  return `${SESSION_COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/${secure ? '; Secure' : ''}`;
}

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Why a state-changing request is refused as possibly cross-site, or undefined when it may go
 * on: it must carry `X-Cairn-Request: 1`, an `Origin` it carries must be this server's, and a
 * browser that says it comes from another site is believed.
 */
export function crossSiteProblem(req: IncomingMessage, ownOrigins: readonly string[]): string | undefined {
  if (!STATE_CHANGING.has(req.method ?? '')) return undefined;
  if (req.headers[REQUEST_HEADER] !== '1') return `a ${req.method} request must carry the header X-Cairn-Request: 1`;
  const origin = req.headers.origin;
  if (origin !== undefined && !ownOrigins.includes(origin)) return `the request comes from ${origin}, not from ${ownOrigins.join(' or ')}`;
  if (req.headers['sec-fetch-site'] === 'cross-site') return 'the browser says the request comes from another site';
  return undefined;
}

/**
 * The origins a page of this server has. On loopback: the address it listens on (a name that
 * only resolves to it, as in DNS rebinding, is another origin). Listening for other hosts
 * (--web-allow-remote): also the name the browser reached it by, its Host header.
 */
export function ownOrigins(req: IncomingMessage, listenOrigin: string, remote: boolean, secure: boolean): string[] {
  const host = req.headers.host;
  return remote && host ? [listenOrigin, `${secure ? 'https' : 'http'}://${host}`] : [listenOrigin];
}

/** On loopback, a request must name this server by its address: a foreign name in Host means a page of another site reached it (DNS rebinding). */
export function foreignHost(req: IncomingMessage, listenOrigin: string, remote: boolean): boolean {
  if (remote) return false;
  const host = req.headers.host;
  const own = new URL(listenOrigin);
  return host !== undefined && host !== own.host && host !== `localhost:${own.port}`;
}
