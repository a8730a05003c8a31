import { randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomically } from '../state-file.js';

/** The file in the state folder holding the dashboard's token (mode 0600). */
export const WEB_TOKEN_FILE = 'web-token';

/**
 * The dashboard's token: made at the first start with --web (32 random bytes, base64url) and
 * kept in `<state dir>/web-token`, so the address `cairn ui` prints stays valid across restarts.
 */
export async function loadOrCreateWebToken(stateDir: string): Promise<string> {
  const path = join(stateDir, WEB_TOKEN_FILE);
  const existing = await readWebToken(stateDir);
  if (existing) return existing;
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const token = randomBytes(32).toString('base64url');
  await writeFileAtomically(path, token + '\n', 0o600);
  return token;
}

/** The token kept in `stateDir`, or undefined when there is none (no daemon ran with --web there). */
export async function readWebToken(stateDir: string): Promise<string | undefined> {
  try {
    const token = (await readFile(join(stateDir, WEB_TOKEN_FILE), 'utf8')).trim();
    return /^[A-Za-z0-9_-]{43}$/.test(token) ? token : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Compares in constant time: how long a wrong guess takes tells nothing about the token. */
export function tokenMatches(given: string | undefined, token: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}
