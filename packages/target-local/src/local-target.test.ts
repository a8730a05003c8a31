import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TEMP_PREFIX, TargetError, allocateAligned } from '@cairn/core';
import { createTestPluginContext, describeTargetConformance } from '@cairn/core/testing';
import { activate } from './index.js';
import { LocalTarget, localTargetFactory } from './local-target.js';

async function makeTempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'cairn-target-local-'));
}

describeTargetConformance('LocalTarget', async () => {
  const dir = await makeTempDir();
  // The repository folder itself does not exist yet: put must create it.
  return { target: new LocalTarget(join(dir, 'repo')), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

describe('LocalTarget', () => {
  let dir: string;
  let root: string;
  let target: LocalTarget;
  beforeEach(async () => {
    dir = await makeTempDir();
    root = join(dir, 'repo');
    target = new LocalTarget(root);
  });
  afterEach(async () => {
    target.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it.each([0o000, 0o022, 0o077])('creates files 0600 and folders 0700 under umask %o', async (umask) => {
    const previous = process.umask(umask);
    try {
      await target.put('data/ab/abcd', Buffer.from('pack'));
    } finally {
      process.umask(previous);
    }
    expect((await stat(join(root, 'data/ab/abcd'))).mode & 0o777).toBe(0o600);
    for (const folder of ['', 'data', 'data/ab']) {
      expect((await stat(join(root, folder))).mode & 0o777, `folder '${folder}'`).toBe(0o700);
    }
  });

  it('stores each object as a plain file named by its key, leaving no temp file', async () => {
    await target.put('snapshots/s1', Buffer.from('manifest'));
    expect(await readdir(join(root, 'snapshots'))).toEqual(['s1']);
  });

  it('does not list a temp file left behind by a crash', async () => {
    await target.put('data/ab/abcd', Buffer.from('complete'));
    await writeFile(join(root, 'data/ab/.tmp-0123456789abcdef'), 'half a pack');
    await writeFile(join(root, '.tmp-fedcba9876543210'), 'half a config');
    const keys = [];
    for await (const info of target.list('')) keys.push(info.key);
    expect(keys).toEqual(['data/ab/abcd']);
  });

  it('does not create the repository folder until something is put', async () => {
    const created = await localTargetFactory.create({ type: 'local', path: 'repo' }, createContext(dir));
    expect(created.location).toBe(root);
    await expect(stat(root)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('resolves a relative path against the job folder and keeps an absolute one', async () => {
    const relativeTarget = await localTargetFactory.create({ type: 'local', path: '../backups/laptop' }, createContext('/etc/cairn'));
    const absoluteTarget = await localTargetFactory.create({ type: 'local', path: '/srv/repo' }, createContext('/etc/cairn'));
    expect(relativeTarget.location).toBe('/etc/backups/laptop');
    expect(absoluteTarget.location).toBe('/srv/repo');
  });

  it('rejects keys and prefixes that would leave the repository folder', async () => {
    for (const key of ['../escape', 'data/../../escape', '/etc/passwd', 'data//x', '', 'data/.tmp-1', 'Data/x']) {
      await expect(target.put(key, Buffer.from('x')), key).rejects.toBeInstanceOf(TargetError);
    }
    await expect(target.list('../')[Symbol.asyncIterator]().next()).rejects.toBeInstanceOf(TargetError);
    await expect(stat(join(dir, 'escape'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('reports a failing put as a TargetError that names the path', async () => {
    // The repository path is a file, so no folder can be made under it.
    await writeFile(root, 'not a folder');
    const error = await target.put('data/ab/abcd', Buffer.from('x')).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(TargetError);
    expect((error as TargetError).message).toContain(join(root, 'data/ab/abcd'));
    expect(target.isNotFound(error)).toBe(false);
  });

  it.skipIf(process.getuid?.() === 0)('reports permission denied with the path', async () => {
    await target.put('config', Buffer.from('x'));
    await chmod(root, 0o500);
    try {
      const error = await target.put('keys/k1', Buffer.from('x')).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(TargetError);
      expect((error as TargetError).message).toMatch(/^Cannot write .*keys\/k1: permission denied$/);
    } finally {
      await chmod(root, 0o700);
    }
  });

  it('treats a folder where an object should be as not found', async () => {
    await target.put('data/ab/abcd', Buffer.from('x'));
    const calls = [
      () => target.get('data/ab'),
      () => target.stat('data/ab'),
      () => target.remove('data/ab'),
      () => target.get('data/ab/abcd/deeper'),
    ];
    for (const call of calls) {
      expect(target.isNotFound(await call().catch((err: unknown) => err)), String(call)).toBe(true);
    }
  });

  it('ranged reads of a pack replaced or removed through the target see the change (its kept-open handle is dropped)', async () => {
    await target.put('data/ab/abcd', Buffer.from('first pack'));
    expect((await target.get('data/ab/abcd', { offset: 0, length: 5 })).toString()).toBe('first');
    await target.put('data/ab/abcd', Buffer.from('other bytes'));
    expect((await target.get('data/ab/abcd', { offset: 6, length: 5 })).toString()).toBe('bytes');
    await expect(target.get('data/ab/abcd', { offset: 6, length: 6 })).rejects.toThrow(/has 11 bytes/);
    await target.remove('data/ab/abcd');
    const err = await target.get('data/ab/abcd', { offset: 0, length: 1 }).catch((e: unknown) => e);
    expect(target.isNotFound(err)).toBe(true);
  });
});

describe('LocalTarget with packs in page-aligned memory', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A pack of `length` bytes at the start of aligned memory whose bytes after the pack are not zero. */
  function alignedPack(length: number): Uint8Array {
    const memory = new Uint8Array(allocateAligned(length + 8192));
    randomFillSync(memory);
    return memory.subarray(0, length);
  }

  async function expectStored(target: LocalTarget, folder: string, cases: Array<[string, Uint8Array]>): Promise<void> {
    for (const [key, data] of cases) await target.put(key, data);
    for (const [key, data] of cases) {
      const path = join(folder, key);
      expect((await readFile(path)).equals(Buffer.from(data)), key).toBe(true);
      expect((await stat(path)).mode & 0o777, key).toBe(0o600);
    }
    expect(await readdir(join(folder, 'data/ab'))).toEqual(cases.map(([key]) => key.split('/').pop()).sort());
  }

  /** Writes each case through openWriter in MiB pieces of aligned memory (a short last one), as a streamed pack is; checks the files, and that no temp file is left. */
  async function expectStreamed(target: LocalTarget, folder: string, cases: Array<[string, Uint8Array]>): Promise<void> {
    const staging = new Uint8Array(allocateAligned(1024 * 1024));
    for (const [key, data] of cases) {
      const writer = await target.openWriter();
      for (let at = 0; at < data.length; at += staging.length) {
        const piece = data.subarray(at, at + staging.length);
        randomFillSync(staging);
        staging.set(piece);
        await writer.write(staging.subarray(0, piece.length));
      }
      await writer.commit(key);
    }
    for (const [key, data] of cases) {
      const path = join(folder, key);
      expect((await readFile(path)).equals(Buffer.from(data)), key).toBe(true);
      expect((await stat(path)).mode & 0o777, key).toBe(0o600);
    }
    expect((await readdir(folder)).filter((name) => name.startsWith(TEMP_PREFIX))).toEqual([]);
  }

  const cases = (): Array<[string, Uint8Array]> => [
    ['data/ab/ab01', alignedPack(5000)],
    ['data/ab/ab02', alignedPack(3 * 4096)],
    ['data/ab/ab03', alignedPack(1)],
    ['data/ab/ab04', alignedPack(16 * 1024 * 1024 + 77)],
  ];

  it('stores exactly the pack, not the memory after it', async () => {
    const root = join(dir, 'repo');
    await expectStored(new LocalTarget(root), root, cases());
    await expectStreamed(new LocalTarget(root), root, cases().map(([key, data]) => [`${key}s`, data]));
  });

  it('leaves a streamed object killed midway as a temp file that removeLeftovers takes away', async () => {
    const root = join(dir, 'repo');
    const target = new LocalTarget(root);
    const writer = await target.openWriter();
    await writer.write(new Uint8Array(5000));
    const left = (await readdir(root)).filter((name) => name.startsWith(TEMP_PREFIX));
    expect(left).toHaveLength(1);
    expect(await collectKeys(target)).toEqual([]);
    expect(await target.removeLeftovers(new Date(Date.now() + 1000))).toEqual({ count: 1, bytes: 5000 });
    expect(await readdir(root)).toEqual([]);
    await writer.abort();
  });

  // ramfs refuses O_DIRECT (EINVAL, after creating the file); mounting it needs root.
  it.skipIf(process.getuid?.() !== 0)('writes through the page cache on a filesystem without direct I/O', async () => {
    execFileSync('mount', ['-t', 'ramfs', 'ramfs', dir]);
    try {
      await expectStored(new LocalTarget(dir), dir, cases());
      await expectStreamed(new LocalTarget(dir), dir, cases().map(([key, data]) => [`${key}s`, data]));
    } finally {
      execFileSync('umount', [dir]);
    }
  });
});

describe('activate', () => {
  it('registers the local target factory and unregisters it on dispose', async () => {
    const context = await createTestPluginContext(fileURLToPath(new URL('..', import.meta.url)));
    await activate(context);
    expect(context.targets.get('local')).toBe(localTargetFactory);
    await context.subscriptions.dispose();
    expect(context.targets.types()).toEqual([]);
  });
});

function createContext(baseDir: string) {
  return { baseDir, readSecret: () => Promise.reject(new Error('the local target reads no secrets')) };
}

async function collectKeys(target: LocalTarget): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of target.list('')) keys.push(object.key);
  return keys;
}
