import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { AuthenticationError, NONCE_LENGTH, SEAL_OVERHEAD, blake3Digest, blobIdAndDigest, blobIdOf, createImageHash, packIdOf, deriveKey, nodeScrypt, newMasterKey, open, openInto, seal, sealInto, useNativeCipher, cipherInUse } from './crypto.js';

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

  it('gives the same keyed ids however calls with different keys interleave (its hashers are reused)', () => {
    const other = newMasterKey();
    const data = [Buffer.from('a'), Buffer.alloc(70_000, 9), Buffer.alloc(0)];
    for (const scheme of ['blake3-keyed', 'blake3-keyed-digest'] as const) {
      const first = data.map((d) => [blobIdOf(scheme, key.blobId, d), blobIdOf(scheme, other.blobId, d)]);
      const again = data.map((d) => [blobIdOf(scheme, key.blobId, Buffer.from(d)), blobIdOf(scheme, Buffer.from(other.blobId), d)]);
      expect(again).toEqual(first);
      for (const [mine, theirs] of first) expect(mine!.equals(theirs!)).toBe(false);
    }
  });

  it('never gives two objects the same nonce, across refills of the random pool', () => {
    const plain = Buffer.alloc(16, 1);
    const out = Buffer.alloc(16 + SEAL_OVERHEAD);
    const nonces = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      nonces.add(seal(key.encryption, plain).toString('hex', 0, 12));
      sealInto(key.encryption, out, plain);
      nonces.add(out.toString('hex', 0, 12));
      expect(openInto(key.encryption, out, Buffer.alloc(16)), 'sealInto opens').toBe(16);
    }
    expect(nonces.size).toBe(4000);
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

  // Node's cipher first: useNativeCipher switches this thread for good.
  describe.each(['node', 'native'] as const)('sealing into and opening into a buffer with the %s cipher', (implementation) => {
    beforeAll(async () => {
      if (implementation === 'native') await useNativeCipher();
      expect(cipherInUse()).toBe(implementation);
    });

    it('seals into and opens into a buffer in pieces, interchangeably with seal and open', () => {
      for (const length of [0, 1, 1024 * 1024 - 1, 1024 * 1024, 3 * 1024 * 1024 + 5]) {
        const head = Uint8Array.of(7);
        const plain = randomBytes(length);
        const out = new Uint8Array(length + 1 + SEAL_OVERHEAD + 9);
        const sealedLength = sealInto(key.encryption, out, head, plain);
        expect(sealedLength).toBe(length + 1 + SEAL_OVERHEAD);
        const sealed = out.subarray(0, sealedLength);
        expect(open(key.encryption, sealed).equals(Buffer.concat([head, plain]))).toBe(true);
        const into = Buffer.alloc(length + 1);
        expect(openInto(key.encryption, seal(key.encryption, head, plain), into)).toBe(length + 1);
        expect(into.equals(Buffer.concat([head, plain]))).toBe(true);
      }
      // More parts than the native cipher takes at once: Node's seals them, either opens them.
      const parts = Array.from({ length: 11 }, (_, i) => randomBytes(i * 100));
      expect(open(key.encryption, seal(key.encryption, ...parts)).equals(Buffer.concat(parts))).toBe(true);
    });

    it('seals in place: a part lying exactly where its ciphertext goes gives the same as a copy elsewhere would', () => {
      for (const length of [0, 5, 1024 * 1024 + 3, 3 * 1024 * 1024 + 5]) {
        const framed = Buffer.concat([Uint8Array.of(0), randomBytes(length)]);
        const buffer = new Uint8Array(framed.length + SEAL_OVERHEAD);
        buffer.set(framed, NONCE_LENGTH);
        const sealedLength = sealInto(key.encryption, buffer, buffer.subarray(NONCE_LENGTH, NONCE_LENGTH + framed.length));
        expect(sealedLength).toBe(buffer.length);
        expect(open(key.encryption, buffer).equals(framed), `${length} bytes`).toBe(true);
      }
    });

    it('refuses, opening into a buffer, a flipped bit in any piece, another key, and a plaintext longer than the buffer', () => {
      const plain = randomBytes(2 * 1024 * 1024 + 100);
      const sealed = seal(key.encryption, plain);
      const into = Buffer.alloc(plain.length);
      for (const at of [0, 12, 1024 * 1024 + 12, sealed.length - 20, sealed.length - 1]) {
        const damaged = Buffer.from(sealed);
        damaged[at]! ^= 1;
        expect(() => openInto(key.encryption, damaged, into)).toThrow(AuthenticationError);
        expect(() => open(key.encryption, damaged)).toThrow(AuthenticationError);
      }
      expect(() => open(newMasterKey().encryption, sealed)).toThrow(AuthenticationError);
      expect(() => openInto(newMasterKey().encryption, sealed, into)).toThrow(AuthenticationError);
      expect(() => openInto(key.encryption, sealed, into.subarray(1))).toThrow(AuthenticationError);
      expect(() => openInto(key.encryption, sealed.subarray(0, 27), into)).toThrow(AuthenticationError);
    });
  });

  it.each(['hmac-sha256', 'blake3-keyed', 'blake3-keyed-digest'] as const)('derives %s blob ids with a key, so ids differ between repositories', (scheme) => {
    const data = Buffer.from('same content');
    expect(blobIdOf(scheme, key.blobId, data).equals(blobIdOf(scheme, key.blobId, data))).toBe(true);
    expect(blobIdOf(scheme, key.blobId, data).equals(blobIdOf(scheme, newMasterKey().blobId, data))).toBe(false);
    expect(blobIdOf(scheme, key.blobId, data)).toHaveLength(32);
  });

  it('computes the published BLAKE3, HMAC-SHA256 and SHA-256 test vectors', () => {
    // BLAKE3's test_vectors.json: key "whats the Elvish word for friend", input byte i = i mod 251.
    const blake3Key = Buffer.from('whats the Elvish word for friend');
    const input = (length: number) => Buffer.from(Array.from({ length }, (_, i) => i % 251));
    expect(blobIdOf('blake3-keyed', blake3Key, input(0)).toString('hex')).toBe('92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26');
    expect(blobIdOf('blake3-keyed', blake3Key, input(1024)).toString('hex')).toBe('75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4');
    // blake3-keyed-digest (format 7): `b3sum --raw INPUT > D; printf KEY | b3sum --keyed --no-names D`.
    expect(blobIdOf('blake3-keyed-digest', blake3Key, input(0)).toString('hex')).toBe('f3df7666701d6c0a56d512ce81bc1b88f62c8fbcdda7e2b54369850467a5f06b');
    expect(blobIdOf('blake3-keyed-digest', blake3Key, input(1024)).toString('hex')).toBe('3f7a41018857609611f77680cdb00efa271f650748dc27d7d0e75fdfcd1f7b2d');
    expect(packIdOf('blake3', Buffer.alloc(0)).toString('hex')).toBe('af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262');
    expect(packIdOf('sha256', Buffer.from('abc')).toString('hex')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    // RFC 4231, test case 2.
    expect(blobIdOf('hmac-sha256', Buffer.from('Jefe'), Buffer.from('what do ya want for nothing?')).toString('hex')).toBe(
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    );
  });

  it('digests an image fed in pieces like the whole at once (b3sum and sha256sum vectors)', () => {
    const digest = (algorithm: 'sha256' | 'blake3', pieces: Uint8Array[]) => {
      const hash = createImageHash(algorithm);
      for (const piece of pieces) hash.update(piece);
      return hash.digestHex();
    };
    expect(digest('blake3', [Buffer.from('a'), Buffer.from('bc')])).toBe('6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85');
    expect(digest('sha256', [Buffer.from('ab'), Buffer.from('c')])).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    // Pieces larger than BLAKE3's 1 KiB chunks, split off their boundaries, over a shared buffer.
    const shared = new Uint8Array(new SharedArrayBuffer(3 * 1024 * 1024 + 17));
    shared.set(randomBytes(shared.length));
    const whole = digest('blake3', [Buffer.from(shared)]);
    expect(digest('blake3', [shared.subarray(0, 1025), shared.subarray(1025, 2 * 1024 * 1024 + 3), shared.subarray(2 * 1024 * 1024 + 3)])).toBe(whole);
  });

  it.each(['hmac-sha256', 'blake3-keyed', 'blake3-keyed-digest'] as const)('gives a %s blob id with the plain BLAKE3 of the same bytes, or the id alone', (scheme) => {
    const data = randomBytes(5000);
    const both = blobIdAndDigest(scheme, key.blobId, data, true);
    expect(both.id.equals(blobIdOf(scheme, key.blobId, data))).toBe(true);
    expect(both.digest?.toString('hex')).toBe(blake3Digest(data).toString('hex'));
    expect(blobIdAndDigest(scheme, key.blobId, data, false)).toEqual({ id: both.id });
  });

  it('hashes a view into shared memory like a copy of the same bytes', () => {
    const shared = new Uint8Array(new SharedArrayBuffer(4096));
    shared.set(randomBytes(4096));
    const view = shared.subarray(100, 3000);
    expect(blobIdOf('blake3-keyed', key.blobId, view).equals(blobIdOf('blake3-keyed', key.blobId, Buffer.from(view)))).toBe(true);
  });

  it('derives the same key from the same password and salt only', async () => {
    const salt = Buffer.alloc(32, 1);
    const params = { N: 1024, r: 8, p: 1 };
    const a = await deriveKey('correct horse', salt, params);
    expect((await deriveKey('correct horse', salt, params)).equals(a)).toBe(true);
    expect((await deriveKey('correct horsf', salt, params)).equals(a)).toBe(false);
    expect((await deriveKey('correct horse', Buffer.alloc(32, 2), params)).equals(a)).toBe(false);
  });

  it.each([
    ['the default parameters (the addon derives)', { N: 2 ** 15, r: 8, p: 1 }],
    ['parameters the addon does not take (Node derives)', { N: 16, r: 1, p: 65 }],
  ])('derives the key Node derives with %s', async (_, params) => {
    const salt = randomBytes(32);
    // Normalized to NFC first: the decomposed and composed forms are one password.
    const key = await deriveKey('cafe\u0301 ☕', salt, params);
    expect(key.equals(await nodeScrypt('café ☕', salt, params))).toBe(true);
  });
});
