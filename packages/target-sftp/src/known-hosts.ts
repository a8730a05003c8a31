import { createHash, createHmac } from 'node:crypto';

/** What a known_hosts file says about the key a server showed. */
export type HostKeyVerdict =
  /** An entry for this host holds exactly this key. */
  | { status: 'known'; line: number }
  /** No entry names this host. */
  | { status: 'unknown' }
  /** Entries name this host, but none holds this key: the key changed, or someone is in the middle. */
  | { status: 'changed'; lines: number[] }
  /** The key is listed as `@revoked`. */
  | { status: 'revoked'; line: number };

/** The OpenSSH fingerprint of a public key blob: `SHA256:` and unpadded base64. */
export function fingerprintOf(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type written at the start of a public key blob, e.g. `ssh-ed25519`. */
export function keyTypeOf(keyBlob: Buffer): string {
  if (keyBlob.length < 4) return 'unknown';
  const length = keyBlob.readUInt32BE(0);
  if (length > 64 || 4 + length > keyBlob.length) return 'unknown';
  return keyBlob.subarray(4, 4 + length).toString('latin1');
}

/** How OpenSSH names a host in known_hosts: `host`, or `[host]:port` for a port other than 22. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** A known_hosts line for the key, as `ssh-keyscan` or `accept-new` would write it. */
export function knownHostsLine(host: string, port: number, keyBlob: Buffer): string {
  return `${knownHostsName(host, port)} ${keyTypeOf(keyBlob)} ${keyBlob.toString('base64')}\n`;
}

interface Entry {
  line: number;
  marker: '' | '@revoked' | '@cert-authority';
  patterns: string;
  keyType: string;
  key: Buffer;
}

function parse(text: string): Entry[] {
  const entries: Entry[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const fields = raw.trim().split(/\s+/);
    if (fields[0] === undefined || fields[0] === '' || fields[0].startsWith('#')) continue;
    let marker: Entry['marker'] = '';
    if (fields[0] === '@revoked' || fields[0] === '@cert-authority') marker = fields.shift() as Entry['marker'];
    const [patterns, keyType, base64] = fields;
    if (patterns === undefined || keyType === undefined || base64 === undefined) continue;
    entries.push({ line: i + 1, marker, patterns, keyType, key: Buffer.from(base64, 'base64') });
  }
  return entries;
}

/** Matches one host name against a comma-separated pattern list (wildcards, `!` negation, `|1|` hashed names). */
export function hostMatches(patterns: string, name: string): boolean {
  if (patterns.startsWith('|1|')) {
    const [, , salt, hash] = patterns.split('|');
    if (salt === undefined || hash === undefined) return false;
    return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
  }
  let matched = false;
  for (const pattern of patterns.split(',')) {
    const negated = pattern.startsWith('!');
    const glob = negated ? pattern.slice(1) : pattern;
    if (!globMatches(glob.toLowerCase(), name.toLowerCase())) continue;
    if (negated) return false;
    matched = true;
  }
  return matched;
}

function globMatches(glob: string, name: string): boolean {
  const regex = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${regex}$`).test(name);
}

/** Checks the key a server showed against the text of a known_hosts file. */
export function checkKnownHosts(text: string, host: string, port: number, keyBlob: Buffer): HostKeyVerdict {
  const name = knownHostsName(host, port);
  const forHost = parse(text).filter((e) => e.marker !== '@cert-authority' && hostMatches(e.patterns, name));
  const revoked = forHost.find((e) => e.marker === '@revoked' && e.key.equals(keyBlob));
  if (revoked) return { status: 'revoked', line: revoked.line };
  const plain = forHost.filter((e) => e.marker === '');
  const match = plain.find((e) => e.key.equals(keyBlob));
  if (match) return { status: 'known', line: match.line };
  if (plain.length === 0) return { status: 'unknown' };
  return { status: 'changed', lines: plain.map((e) => e.line) };
}

/** The key types known_hosts holds for a host, so the client can ask the server for one of those first. */
export function knownKeyTypes(text: string, host: string, port: number): string[] {
  const name = knownHostsName(host, port);
  const types = parse(text)
    .filter((e) => e.marker === '' && hostMatches(e.patterns, name))
    .map((e) => e.keyType);
  return [...new Set(types)];
}
