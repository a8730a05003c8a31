import { isIP } from 'node:net';
import { UsageError } from '../../errors.js';

export const DEFAULT_WEB_ADDRESS = '127.0.0.1:8780';

export interface WebListenOptions {
  host: string;
  port: number;
  /** PEM files: with both, the dashboard is served over HTTPS. */
  tls?: { certFile: string; keyFile: string };
}

export interface WebFlags {
  /** `--web` (an empty string or true: the default address). */
  web: string;
  allowRemote: boolean;
  tlsCert?: string;
  tlsKey?: string;
}

/**
 * `--web [ADDR:PORT]` with its companions. Loopback only unless --web-allow-remote, and then
 * only with TLS: the token travels in every request, and plain HTTP on a network gives it away.
 */
export function webListenOptions(flags: WebFlags): WebListenOptions {
  const text = flags.web.trim() === '' ? DEFAULT_WEB_ADDRESS : flags.web.trim();
  const match = /^(?:(?:\[([^\]]+)\]|([^:[\]]*)):)?(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw new UsageError(`--web takes HOST:PORT (an IP address or localhost, e.g. ${DEFAULT_WEB_ADDRESS} or [::1]:8780), or a port: not "${text}"`);
  const host = match[1] ?? (match[2] || '127.0.0.1');
  if (host !== 'localhost' && isIP(host) === 0) throw new UsageError(`--web must name an IP address or localhost, not "${host}"`);
  if (Boolean(flags.tlsCert) !== Boolean(flags.tlsKey)) throw new UsageError('--web-tls-cert and --web-tls-key go together: give both PEM files');
  const tls = flags.tlsCert && flags.tlsKey ? { certFile: flags.tlsCert, keyFile: flags.tlsKey } : undefined;
  if (!isLoopback(host)) {
    if (!flags.allowRemote) throw new UsageError(`--web ${text} can be reached from other hosts, and the dashboard can restore over any disk: listen on 127.0.0.1 or [::1], or add --web-allow-remote (with TLS)`);
    if (!tls) throw new UsageError(`--web ${text} is not a loopback address: it needs TLS (--web-tls-cert FILE --web-tls-key FILE), or the token would cross the network in clear text`);
  }
  return { host, port, ...(tls && { tls }) };
}

export function isLoopback(host: string): boolean {
  const v4 = host.replace(/^::ffff:/i, '');
  return host === 'localhost' || host === '::1' || (isIP(v4) === 4 && v4.startsWith('127.'));
}

/** `http://127.0.0.1:8780` or `https://[::1]:8443`. */
export function originOf(host: string, port: number, tls: boolean): string {
  return `${tls ? 'https' : 'http'}://${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
}
