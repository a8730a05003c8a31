import { describe, expect, test } from 'vitest';
import { UsageError } from '../../errors.js';
import { originOf, webListenOptions } from './web-address.js';

describe('--web and its companions', () => {
  test('no value is 127.0.0.1:8780; a port alone is on 127.0.0.1; loopback addresses need nothing else', () => {
    expect(webListenOptions({ web: '', allowRemote: false })).toEqual({ host: '127.0.0.1', port: 8780 });
    expect(webListenOptions({ web: '9000', allowRemote: false })).toEqual({ host: '127.0.0.1', port: 9000 });
    expect(webListenOptions({ web: '[::1]:8780', allowRemote: false })).toEqual({ host: '::1', port: 8780 });
    expect(webListenOptions({ web: 'localhost:0', allowRemote: false })).toEqual({ host: 'localhost', port: 0 });
    expect(webListenOptions({ web: '127.0.0.2:8780', allowRemote: false, tlsCert: '/c.pem', tlsKey: '/k.pem' })).toEqual({ host: '127.0.0.2', port: 8780, tls: { certFile: '/c.pem', keyFile: '/k.pem' } });
  });

  test('another address needs --web-allow-remote and TLS; bad addresses and half a TLS pair are usage errors', () => {
    const refused = (flags: Parameters<typeof webListenOptions>[0], message: RegExp) => {
      expect(() => webListenOptions(flags)).toThrow(UsageError);
      expect(() => webListenOptions(flags)).toThrow(message);
    };
    refused({ web: '0.0.0.0:8780', allowRemote: false }, /--web-allow-remote/);
    refused({ web: '192.168.1.5:8780', allowRemote: true }, /needs TLS/);
    refused({ web: '[::]:8780', allowRemote: true, tlsCert: '/c.pem' }, /go together/);
    refused({ web: 'nas.local:8780', allowRemote: true }, /IP address or localhost/);
    refused({ web: '127.0.0.1:70000', allowRemote: false }, /HOST:PORT/);
    expect(webListenOptions({ web: '0.0.0.0:8443', allowRemote: true, tlsCert: '/c.pem', tlsKey: '/k.pem' })).toMatchObject({ host: '0.0.0.0', port: 8443 });
  });

  test('origins put IPv6 addresses in brackets', () => {
    expect(originOf('127.0.0.1', 8780, false)).toBe('http://127.0.0.1:8780');
    expect(originOf('::1', 8443, true)).toBe('https://[::1]:8443');
  });
});
