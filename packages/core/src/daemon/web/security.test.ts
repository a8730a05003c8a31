import type { IncomingMessage } from 'node:http';
import { describe, expect, test } from 'vitest';
import { crossSiteProblem, foreignHost, isAuthenticated, ownOrigins, sessionCookie } from './security.js';

const TOKEN = 'a'.repeat(43);
const ORIGIN = 'http://127.0.0.1:8780';
const request = (method: string, headers: Record<string, string>) => ({ method, headers }) as unknown as IncomingMessage;

describe('the dashboard request checks', () => {
  test('the token is taken from the session cookie or a Bearer header, nowhere else', () => {
    expect(isAuthenticated(request('GET', { cookie: `theme=dark; cairn_session=${TOKEN}` }), TOKEN)).toBe(true);
    expect(isAuthenticated(request('GET', { authorization: `Bearer ${TOKEN}` }), TOKEN)).toBe(true);
    expect(isAuthenticated(request('GET', { authorization: `Bearer ${TOKEN}x` }), TOKEN)).toBe(false);
    // A wrong Bearer is not rescued by a right cookie: a script's mistake stays visible.
    expect(isAuthenticated(request('GET', { authorization: 'Bearer nope', cookie: `cairn_session=${TOKEN}` }), TOKEN)).toBe(false);
    expect(isAuthenticated(request('GET', { 'x-token': TOKEN }), TOKEN)).toBe(false);
    expect(isAuthenticated(request('GET', {}), TOKEN)).toBe(false);
  });

  test('the cookie is HttpOnly and SameSite=Strict, and Secure under TLS', () => {
    expect(sessionCookie(TOKEN, false)).toBe(`cairn_session=${TOKEN}; HttpOnly; SameSite=Strict; Path=/`);
    expect(sessionCookie(TOKEN, true)).toMatch(/; Secure$/);
  });

  test('a state-changing request needs X-Cairn-Request: 1 and no foreign Origin or cross-site fetch; reads are not checked', () => {
    const own = [ORIGIN];
    expect(crossSiteProblem(request('GET', {}), own)).toBeUndefined();
    expect(crossSiteProblem(request('POST', { 'x-cairn-request': '1' }), own)).toBeUndefined();
    expect(crossSiteProblem(request('DELETE', { 'x-cairn-request': '1', origin: ORIGIN, 'sec-fetch-site': 'same-origin' }), own)).toBeUndefined();
    expect(crossSiteProblem(request('POST', {}), own)).toMatch(/X-Cairn-Request/);
    expect(crossSiteProblem(request('PUT', { 'x-cairn-request': 'yes' }), own)).toMatch(/X-Cairn-Request/);
    expect(crossSiteProblem(request('POST', { 'x-cairn-request': '1', origin: 'http://127.0.0.1:9999' }), own)).toMatch(/comes from/);
    expect(crossSiteProblem(request('POST', { 'x-cairn-request': '1', 'sec-fetch-site': 'cross-site' }), own)).toMatch(/another site/);
  });

  test('on loopback the Host must name this server; listening for other hosts, the Host the browser used is an own origin', () => {
    expect(foreignHost(request('GET', { host: '127.0.0.1:8780' }), ORIGIN, false)).toBe(false);
    expect(foreignHost(request('GET', { host: 'localhost:8780' }), ORIGIN, false)).toBe(false);
    expect(foreignHost(request('GET', { host: 'attacker.example:8780' }), ORIGIN, false)).toBe(true);
    expect(foreignHost(request('GET', { host: 'localhost:9999' }), ORIGIN, false)).toBe(true);
    expect(foreignHost(request('GET', { host: 'nas.lan:8443' }), 'https://0.0.0.0:8443', true)).toBe(false);
    expect(ownOrigins(request('POST', { host: 'nas.lan:8443' }), 'https://0.0.0.0:8443', true, true)).toEqual(['https://0.0.0.0:8443', 'https://nas.lan:8443']);
    expect(ownOrigins(request('POST', { host: 'evil.example:8780' }), ORIGIN, false, false)).toEqual([ORIGIN]);
  });
});
