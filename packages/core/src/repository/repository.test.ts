import { spawn } from 'node:child_process';
import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { MemoryTarget, ReadIntoMemoryTarget } from '../testing/index.js';
import { DamageError, RepositoryExistsError, RepositoryNotFoundError, SnapshotNotFoundError, UnsupportedFormatError, WrongPasswordError, RepositoryLockedError } from '../errors.js';
import { Repository, blobIdSchemeOf, imageDigestOf } from './repository.js';
import { RepositoryLocks } from './lock.js';

/** Locks whose clock reads `now()`. */
const locksAt = (now: () => Date = () => new Date()) => new RepositoryLocks({ now });
const acquireLock = (repository: Repository, operation: string, exclusive: boolean, now?: () => Date) => locksAt(now).acquire(repository, operation, exclusive);
import { FORMAT_VERSION, Keys } from './format.js';

describe('Repository', () => {
  it('opens with the password it was created with, and refuses others with WrongPasswordError', async () => {
    const target = new MemoryTarget();
    const created = await Repository.init(target, 'first');
    const opened = await Repository.open(target, 'first');
    expect(opened.config.id).toBe(created.config.id);
    expect(opened.masterKey.encryption.equals(created.masterKey.encryption)).toBe(true);
    await expect(Repository.open(target, 'wrong')).rejects.toBeInstanceOf(WrongPasswordError);
  });

  it('accepts a second password, and lists both keys', async () => {
    const target = new MemoryTarget();
    const repository = await Repository.init(target, 'first');
    await repository.addPassword('second');
    const viaSecond = await Repository.open(target, 'second');
    expect(viaSecond.masterKey.blobId.equals(repository.masterKey.blobId)).toBe(true);
    expect((await viaSecond.listKeys()).map((k) => k.current)).toEqual(expect.arrayContaining([true, false]));
  });

  it('refuses to init twice and to open where there is none', async () => {
    const target = new MemoryTarget();
    await expect(Repository.open(target, 'x')).rejects.toBeInstanceOf(RepositoryNotFoundError);
    await Repository.init(target, 'x');
    await expect(Repository.init(target, 'x')).rejects.toBeInstanceOf(RepositoryExistsError);
  });

  it('refuses a newer format version before asking for the password', async () => {
    const target = new MemoryTarget();
    const repository = await Repository.init(target, 'x');
    await target.put(Keys.config, Buffer.from(JSON.stringify({ ...repository.config, version: FORMAT_VERSION + 1 })));
    await expect(Repository.readConfig(target)).rejects.toThrow(UnsupportedFormatError);
    await expect(Repository.open(target, 'x')).rejects.toThrow(new RegExp(`format version ${FORMAT_VERSION + 1}.*Upgrade cairn`));
  });

  it('records blake3-chunks image digests in new repositories, BLAKE3 in those of versions 3 to 5, SHA-256 in those of versions 1 and 2', async () => {
    const target = new MemoryTarget();
    const repository = await Repository.init(target, 'x');
    expect(repository.config).toMatchObject({ version: FORMAT_VERSION, imageDigest: 'blake3-chunks' });
    expect(imageDigestOf(repository.config)).toBe('blake3-chunks');
    expect((await Repository.init(new MemoryTarget(), 'x', { formatVersion: 5 })).config).toMatchObject({ version: 5, imageDigest: 'blake3' });
    await target.put(Keys.config, Buffer.from(JSON.stringify({ ...repository.config, imageDigest: 'blake3' })));
    await expect(Repository.readConfig(target)).rejects.toThrow(/unknown image digest "blake3"/);
    const { imageDigest: _imageDigest, ...older } = repository.config;
    expect(imageDigestOf({ ...older, version: 2 })).toBe('sha256');
    expect(imageDigestOf({ ...older, version: 1 })).toBe('sha256');
    await target.put(Keys.config, Buffer.from(JSON.stringify({ ...repository.config, imageDigest: 'md5' })));
    await expect(Repository.readConfig(target)).rejects.toThrow(/unknown image digest "md5"/);
    await target.put(Keys.config, Buffer.from(JSON.stringify(older)));
    await expect(Repository.readConfig(target)).rejects.toBeInstanceOf(DamageError);
  });

  it('names blob ids blake3-keyed-digest in new repositories and blake3-keyed in those of versions 2 to 6, and refuses a mix', async () => {
    const target = new MemoryTarget();
    const repository = await Repository.init(target, 'x');
    expect(blobIdSchemeOf(repository.config)).toBe('blake3-keyed-digest');
    expect(blobIdSchemeOf((await Repository.init(new MemoryTarget(), 'x', { formatVersion: 6 })).config)).toBe('blake3-keyed');
    expect(blobIdSchemeOf((await Repository.init(new MemoryTarget(), 'x', { formatVersion: 1 })).config)).toBe('hmac-sha256');
    await target.put(Keys.config, Buffer.from(JSON.stringify({ ...repository.config, blobId: 'blake3-keyed' })));
    await expect(Repository.readConfig(target)).rejects.toThrow(/unknown id schemes \(blobId "blake3-keyed"/);
    await target.put(Keys.config, Buffer.from(JSON.stringify({ ...repository.config, version: 6 })));
    await expect(Repository.readConfig(target)).rejects.toThrow(/unknown id schemes \(blobId "blake3-keyed-digest"/);
  });

  it('reads manifests of versions 1 to 4, and refuses newer or broken ones clearly', async () => {
    const target = new MemoryTarget();
    const repository = await Repository.init(target, 'x');
    const hex = 'ab'.repeat(32);
    const save = async (manifest: object) => (await repository.putSealed('snapshots', Buffer.from(JSON.stringify(manifest)))).id;
    const v1 = await save({ version: 1, time: '2026-01-01T00:00:00Z', sha256: hex });
    expect(await repository.loadSnapshot(v1)).toEqual({ version: 1, time: '2026-01-01T00:00:00Z', imageDigest: { algorithm: 'sha256', hex } });
    const v2 = await save({ version: 2, imageDigest: { algorithm: 'blake3', hex } });
    expect(await repository.loadSnapshot(v2)).toMatchObject({ imageDigest: { algorithm: 'blake3', hex } });
    const chunker = { algorithm: 'fastcdc', min: 1, avg: 2, max: 4 };
    const v3 = await save({ version: 3, kind: 'files', tree: hex, paths: ['/srv'], chunker });
    expect(await repository.loadSnapshot(v3)).toMatchObject({ kind: 'files', tree: hex });
    const v4 = await save({ version: 4, imageDigest: { algorithm: 'blake3-chunks', hex } });
    expect(await repository.loadSnapshot(v4)).toMatchObject({ imageDigest: { algorithm: 'blake3-chunks', hex } });
    const newer = await save({ version: 5, digest: 'whatever' });
    await expect(repository.loadSnapshot(newer)).rejects.toThrow(UnsupportedFormatError);
    await expect(repository.loadSnapshot(newer)).rejects.toThrow(/manifest version 5; this cairn reads up to version 4\. Upgrade cairn/);
    const brokenFiles = [{ version: 3, tree: hex, paths: [], chunker }, { version: 3, kind: 'files', tree: 'x', paths: [], chunker }, { version: 3, kind: 'files', tree: hex, paths: [1], chunker }, { version: 3, kind: 'files', tree: hex, paths: [] }];
    for (const broken of [{ version: 1 }, { version: 1, sha256: 'xyz' }, { version: 2, imageDigest: { algorithm: 'md5', hex } }, { version: 2, sha256: hex }, { version: 2, imageDigest: { algorithm: 'blake3-chunks', hex } }, { version: 4, imageDigest: { algorithm: 'blake3', hex } }, { time: 'no version' }, [1, 2], ...brokenFiles]) {
      await expect(repository.loadSnapshot(await save(broken)), JSON.stringify(broken)).rejects.toThrow(DamageError);
    }
    const notJson = (await repository.putSealed('snapshots', Buffer.from('{'))).id;
    await expect(repository.loadSnapshot(notJson)).rejects.toThrow(/is not valid JSON/);
  });

  describe('an authenticated config (format 4)', () => {
    const edit = async (target: MemoryTarget, change: (text: string) => string) => target.put(Keys.config, Buffer.from(change((await target.get(Keys.config)).toString('utf8'))));

    it('treats an edited but plausible config as damage, never as a setting', async () => {
      for (const change of [(t: string) => t.replace('"chunkSize": 4194304', '"chunkSize": 1048576'), (t: string) => t.replace('"version": 7', '"version": 6').replace('"blake3-keyed-digest"', '"blake3-keyed"'), (t: string) => t.replace(/"id": "(.)/, (_m, c: string) => `"id": "${c === 'a' ? 'b' : 'a'}`)]) {
        const target = new MemoryTarget();
        await Repository.init(target, 'x');
        await edit(target, change);
        await expect(Repository.open(target, 'x')).rejects.toThrow(/config at memory: is damaged: it is not the config key [0-9a-f]{12} was made for/);
      }
    });

    it('refuses implausible values before any password is asked for', async () => {
      const target = new MemoryTarget();
      await Repository.init(target, 'x');
      await edit(target, (t) => t.replace('"chunkSize": 4194304', '"chunkSize": 4194305'));
      await expect(Repository.readConfig(target)).rejects.toThrow(/damaged: chunk size 4194305 is not a power of two/);
      await edit(target, (t) => t.replace('"chunkSize": 4194305', '"chunkSize": 4194304').replace('"version": 7', '"version": 0'));
      await expect(Repository.readConfig(target)).rejects.toBeInstanceOf(DamageError);
    });

    it('says the config is lost when keys remain, and init refuses any location holding repository objects', async () => {
      const target = new MemoryTarget();
      await Repository.init(target, 'x');
      await target.remove(Keys.config);
      await expect(Repository.open(target, 'x')).rejects.toThrow(/has lost its config .*Do not run `cairn init`/);
      await expect(Repository.open(target, 'x')).rejects.toBeInstanceOf(DamageError);
      await expect(Repository.init(target, 'x')).rejects.toThrow(/holds keys\/[0-9a-f]{64}/);
      const onlyData = new MemoryTarget();
      await onlyData.put(Keys.pack('ab'.repeat(32)), Buffer.from('pack'));
      await expect(Repository.init(onlyData, 'x')).rejects.toBeInstanceOf(RepositoryExistsError);
    });

    it('names a damaged key file instead of blaming the password, and opens with an intact one', async () => {
      const target = new MemoryTarget();
      const repository = await Repository.init(target, 'x');
      const key = Keys.key(repository.keyId);
      const bytes = await target.get(key);
      bytes[bytes.indexOf('"N"') + 5]! ^= 0x01; // the scrypt cost
      await target.put(key, bytes);
      await expect(Repository.open(target, 'x')).rejects.toThrow(new RegExp(`key ${key} is damaged: its content does not match its name`));
      await expect(Repository.open(target, 'x')).rejects.toBeInstanceOf(DamageError);
      const restored = Buffer.from(bytes);
      restored[restored.indexOf('"N"') + 5]! ^= 0x01;
      await target.put(key, restored);
      const second = await (await Repository.open(target, 'x')).addPassword('y');
      await target.put(key, bytes);
      expect((await Repository.open(target, 'y')).keyId).toBe(second);
      await expect(Repository.open(target, 'z')).rejects.toThrow(/No intact key opens with this password, and 1 key file\(s\) are damaged/);
    });
  });

  it('stores sealed objects under the hash of their bytes and detects a changed byte', async () => {
    const target = new MemoryTarget();
    const repository = await Repository.init(target, 'x');
    const { id } = await repository.putSealed('snapshots', Buffer.from('{"a":1}'));
    expect((await repository.getSealed('snapshots', id)).toString()).toBe('{"a":1}');
    const bytes = await target.get(Keys.snapshot(id));
    bytes[20]! ^= 0xff;
    await target.put(Keys.snapshot(id), bytes);
    await expect(repository.getSealed('snapshots', id)).rejects.toThrow(/damaged/);
  });

  it.each([
    ['copies from a ranged get for a target without readInto', false],
    ['reads through the target\'s readInto when it has one', true],
  ])('reads a pack into buffers in turn: %s; a missing or truncated pack is damage', async (_, withReadInto) => {
    const target = withReadInto ? new ReadIntoMemoryTarget() : new MemoryTarget();
    const repository = await Repository.init(target, 'x');
    expect(repository.readsPacksInPlace).toBe(withReadInto);
    const id = 'ab'.repeat(32);
    const pack = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
    await repository.savePack(id, pack);
    const into = [new Uint8Array(100), new Uint8Array(0), new Uint8Array(new SharedArrayBuffer(300))];
    await repository.readPackInto(id, 600, into);
    expect(Buffer.concat(into)).toEqual(pack.subarray(600));
    expect(target instanceof ReadIntoMemoryTarget ? target.reads.map((r) => r.key) : []).toEqual(withReadInto ? [Keys.pack(id)] : []);
    await expect(repository.readPackInto(id, 900, [new Uint8Array(101)])).rejects.toThrow(/is truncated: it has 1000 bytes, the read needs 1001/);
    await expect(repository.readPackInto('cd'.repeat(32), 0, [new Uint8Array(1)])).rejects.toThrow(DamageError);
  });

  it('lets shared locks coexist and makes an exclusive lock wait for none', async () => {
    const target = new MemoryTarget();
    const repository = await Repository.init(target, 'x');
    const first = await acquireLock(repository, 'backup', false);
    const second = await acquireLock(repository, 'restore', false);
    await expect(acquireLock(repository, 'prune', true)).rejects.toBeInstanceOf(RepositoryLockedError);
    await first.dispose();
    await second.dispose();
    const exclusive = await acquireLock(repository, 'prune', true);
    await expect(acquireLock(repository, 'backup', false)).rejects.toThrow(/locked exclusively by prune/);
    await exclusive.dispose();
    expect(await repository.listIds('locks')).toEqual([]);
  });

  it('ignores a lock of this host whose process no longer runs, and honours it while the process runs', async () => {
    const target = new MemoryTarget();
    const repository = await Repository.init(target, 'x');
    // A fresh exclusive lock, as a prune in another process on this host writes it (docs/FORMAT.md, Locks).
    const holder = spawn('sleep', ['60'], { stdio: 'ignore' });
    const exited = new Promise((resolve) => holder.once('exit', resolve));
    try {
      const lock = { exclusive: true, operation: 'prune', hostname: hostname(), pid: holder.pid, time: new Date().toISOString() };
      await repository.putSealed('locks', Buffer.from(JSON.stringify(lock)));
      await expect(acquireLock(repository, 'backup', false)).rejects.toBeInstanceOf(RepositoryLockedError);
      await expect(acquireLock(repository, 'backup', false)).rejects.toThrow(new RegExp(`locked exclusively by prune \\(pid ${holder.pid} on `));
    } finally {
      holder.kill('SIGKILL');
      await exited;
    }
    expect(() => process.kill(holder.pid!, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
    // The same lock, now left behind by a dead process: a backup goes ahead, and clears it.
    const backup = await acquireLock(repository, 'backup', false);
    expect(await repository.listIds('locks')).toEqual([backup.id]);
    await backup.dispose();
    expect(await repository.listIds('locks')).toEqual([]);
  });

  it('ignores a lock not refreshed for 30 minutes, even from a live process', async () => {
    const minutesAgo = (minutes: number) => () => new Date(Date.now() - minutes * 60 * 1000);
    // Written by this (live) process, but long ago: as if its host went away without removing it.
    const stale = await Repository.init(new MemoryTarget(), 'x');
    await acquireLock(stale, 'prune', true, minutesAgo(31));
    const backup = await acquireLock(stale, 'backup', false);
    await backup.dispose();
    // Refreshed 29 minutes ago, it still holds.
    const fresh = await Repository.init(new MemoryTarget(), 'x');
    const recent = await acquireLock(fresh, 'prune', true, minutesAgo(29));
    await expect(acquireLock(fresh, 'backup', false)).rejects.toBeInstanceOf(RepositoryLockedError);
    await recent.dispose();
  });

  it('judges a lock stale by the clock it was given: 30 minutes without a refresh', async () => {
    const repository = await Repository.init(new MemoryTarget(), 'x');
    const start = Date.parse('2026-12-01T02:00:00Z');
    const at = (minutes: number) => () => new Date(start + minutes * 60_000);
    const held = await acquireLock(repository, 'prune', true, at(0)); // this process is alive: only time can make it stale
    await expect(acquireLock(repository, 'backup', false, at(29))).rejects.toBeInstanceOf(RepositoryLockedError);
    const later = await acquireLock(repository, 'backup', false, at(31));
    await later.dispose();
    await held.dispose();
    expect(await repository.listIds('locks')).toEqual([]);
  });

  it('resolves snapshot ids: latest, a full id, a unique prefix of 4+ digits; refuses short, unknown and ambiguous ones', async () => {
    const repository = await Repository.init(new MemoryTarget(), 'x');
    const manifest = (minute: number) => Buffer.from(JSON.stringify({ version: 2, time: `2026-12-01T02:${String(minute % 60).padStart(2, '0')}:00.000Z`, imageDigest: { algorithm: 'blake3', hex: 'ab'.repeat(32) } }));
    // Ids are hashes of sealed bytes, so two sharing 4 hex digits take a few hundred snapshots (a birthday bound of 2^16).
    const byPrefix = new Map<string, string>();
    let pair: [string, string] | undefined;
    for (let i = 0; !pair && i < 5000; i++) {
      const { id } = await repository.putSealed('snapshots', manifest(i));
      const other = byPrefix.get(id.slice(0, 4));
      if (other) pair = [other, id];
      byPrefix.set(id.slice(0, 4), id);
    }
    expect(pair).toBeDefined();
    const [a, b] = pair!;
    const shared = a.slice(0, [...a].findIndex((c, i) => c !== b[i]));
    await expect(repository.resolveSnapshot(shared)).rejects.toThrow(new RegExp(`^Snapshot id ${shared} is ambiguous: .*${a.slice(0, 12)}`));
    await expect(repository.resolveSnapshot(shared)).rejects.toThrow(b.slice(0, 12));
    await expect(repository.resolveSnapshot(shared)).rejects.toBeInstanceOf(SnapshotNotFoundError);
    expect((await repository.resolveSnapshot(a.slice(0, shared.length + 1))).id).toBe(a);
    expect((await repository.resolveSnapshot(b)).id).toBe(b);
    await expect(repository.resolveSnapshot(a.slice(0, 3))).rejects.toThrow(/is not a snapshot id \(use latest, or 4 to 64 hex digits\)/);
    await expect(repository.resolveSnapshot('ABCDEF')).rejects.toThrow(/is not a snapshot id/);
    const unknown = [...'0123456789abcdef'].map((c) => c.repeat(8)).find((p) => ![...byPrefix.values()].some((id) => id.startsWith(p)))!;
    await expect(repository.resolveSnapshot(unknown)).rejects.toThrow(`No snapshot ${unknown} in memory:`);
    const latest = await repository.resolveSnapshot('latest');
    expect(latest.manifest.time).toBe((await repository.listSnapshots()).at(-1)!.manifest.time);
  });
});
