import { describe, expect, it } from 'vitest';
import { AuthenticationError, SEAL_OVERHEAD, blobIdOf, deriveKey, newMasterKey, open, seal } from './crypto.js';

describe('crypto', () => {
  const key = newMasterKey();

  it('seals and opens, adding exactly nonce and tag', () => {
    const plain = Buffer.from('a system image chunk');
    const sealed = seal(key.encryption, plain);
    expect(sealed.length).toBe(plain.length + SEAL_OVERHEAD);
    expect(open(key.encryption, sealed).equals(plain)).toBe(true);
  });

  it('uses a fresh nonce each time, so equal plaintexts seal differently', () => {
    const plain = Buffer.alloc(64, 7);
    expect(seal(key.encryption, plain).equals(seal(key.encryption, plain))).toBe(false);
  });

  it('detects a single flipped bit anywhere', () => {
    const sealed = seal(key.encryption, Buffer.from('0123456789abcdef'));
    for (let i = 0; i < sealed.length; i++) {
      const damaged = Buffer.from(sealed);
      damaged[i]! ^= 1;
      expect(() => open(key.encryption, damaged)).toThrow(AuthenticationError);
    }
  });

  it('refuses another key and truncated input', () => {
    const sealed = seal(key.encryption, Buffer.from('x'));
    expect(() => open(newMasterKey().encryption, sealed)).toThrow(AuthenticationError);
    expect(() => open(key.encryption, sealed.subarray(0, 10))).toThrow(AuthenticationError);
  });

  it('derives blob ids with a key, so ids differ between repositories', () => {
    const data = Buffer.from('same content');
    expect(blobIdOf(key.blobId, data).equals(blobIdOf(key.blobId, data))).toBe(true);
    expect(blobIdOf(key.blobId, data).equals(blobIdOf(newMasterKey().blobId, data))).toBe(false);
  });

  it('derives the same key from the same password and salt only', async () => {
    const salt = Buffer.alloc(32, 1);
    const params = { N: 1024, r: 8, p: 1 };
    const a = await deriveKey('correct horse', salt, params);
    expect((await deriveKey('correct horse', salt, params)).equals(a)).toBe(true);
    expect((await deriveKey('correct horsf', salt, params)).equals(a)).toBe(false);
    expect((await deriveKey('correct horse', Buffer.alloc(32, 2), params)).equals(a)).toBe(false);
  });
});
