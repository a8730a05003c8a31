import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkKnownHosts, fingerprintOf, hostMatches, keyTypeOf, knownHostsLine, knownKeyTypes } from './known-hosts.js';

function blob(type: string, body = randomBytes(32)): Buffer {
  const name = Buffer.from(type);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(name.length);
  return Buffer.concat([length, name, body]);
}

const key = blob('ssh-ed25519');
const other = blob('ssh-ed25519');
const b64 = (b: Buffer) => b.toString('base64');

describe('known_hosts', () => {
  it('computes OpenSSH fingerprints and key types', () => {
    expect(fingerprintOf(key)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect(keyTypeOf(key)).toBe('ssh-ed25519');
    expect(keyTypeOf(Buffer.alloc(2))).toBe('unknown');
  });

  it('names hosts on other ports as [host]:port', () => {
    expect(knownHostsLine('nas', 22, key)).toBe(`nas ssh-ed25519 ${b64(key)}\n`);
    expect(knownHostsLine('nas', 2222, key)).toBe(`[nas]:2222 ssh-ed25519 ${b64(key)}\n`);
  });

  it('finds the key, an unknown host and a changed key', () => {
    const text = `# comment\n\nnas,192.0.2.1 ssh-ed25519 ${b64(key)}\n[nas]:2222 ssh-ed25519 ${b64(other)} old\n`;
    expect(checkKnownHosts(text, 'nas', 22, key)).toEqual({ status: 'known', line: 3 });
    expect(checkKnownHosts(text, '192.0.2.1', 22, key)).toEqual({ status: 'known', line: 3 });
    expect(checkKnownHosts(text, 'nas', 2222, key)).toEqual({ status: 'changed', lines: [4] });
    expect(checkKnownHosts(text, 'nas', 2223, key)).toEqual({ status: 'unknown' });
    expect(checkKnownHosts('', 'nas', 22, key)).toEqual({ status: 'unknown' });
  });

  it('matches hashed host names', () => {
    const salt = randomBytes(20);
    const hash = createHmac('sha1', salt).update('[nas]:2222').digest('base64');
    const text = `|1|${b64(salt)}|${hash} ssh-ed25519 ${b64(key)}\n`;
    expect(checkKnownHosts(text, 'nas', 2222, key).status).toBe('known');
    expect(checkKnownHosts(text, 'nas', 22, key).status).toBe('unknown');
  });

  it('matches wildcards and honours negation', () => {
    expect(hostMatches('*.lan,!evil.lan', 'nas.lan')).toBe(true);
    expect(hostMatches('*.lan,!evil.lan', 'evil.lan')).toBe(false);
    expect(hostMatches('nas?', 'nas1')).toBe(true);
    expect(hostMatches('NAS', 'nas')).toBe(true);
    expect(hostMatches('nas', 'nas.lan')).toBe(false);
  });

  it('refuses a revoked key and ignores cert-authority lines', () => {
    const text = `@revoked nas ssh-ed25519 ${b64(key)}\n@cert-authority nas ssh-ed25519 ${b64(other)}\nnas ssh-ed25519 ${b64(key)}\n`;
    expect(checkKnownHosts(text, 'nas', 22, key)).toEqual({ status: 'revoked', line: 1 });
    expect(checkKnownHosts(`@cert-authority nas ssh-ed25519 ${b64(other)}\n`, 'nas', 22, key).status).toBe('unknown');
  });

  it('lists the key types known for a host', () => {
    const rsa = blob('ssh-rsa');
    const text = `nas ssh-rsa ${b64(rsa)}\nnas ssh-ed25519 ${b64(key)}\nother ecdsa-sha2-nistp256 ${b64(other)}\n`;
    expect(knownKeyTypes(text, 'nas', 22)).toEqual(['ssh-rsa', 'ssh-ed25519']);
  });
});
