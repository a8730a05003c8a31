import { mkdtemp, readdir, readlink, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OpenFiles } from './open-files.js';

/** The descriptors this process holds open on files under `dir` (from /proc/self/fd). */
async function openUnder(dir: string): Promise<string[]> {
  const targets = await Promise.all((await readdir('/proc/self/fd')).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')));
  return targets.filter((path) => path.startsWith(dir));
}

const readAll = (files: OpenFiles, path: string) =>
  files.use(path, async (handle, size) => {
    const buffer = Buffer.alloc(size);
    await handle.read(buffer, 0, size, 0);
    return buffer.toString();
  });

describe('OpenFiles', () => {
  let dir: string;
  let files: OpenFiles;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-open-files-'));
  });
  afterEach(async () => {
    files.closeAll();
    await rm(dir, { recursive: true, force: true });
  });

  it('reads a file through one descriptor, kept open between reads and closed by closeAll', async () => {
    files = new OpenFiles();
    const path = join(dir, 'pack');
    await writeFile(path, 'pack bytes');
    const reads = await Promise.all([readAll(files, path), readAll(files, path), readAll(files, path)]);
    expect(reads).toEqual(['pack bytes', 'pack bytes', 'pack bytes']);
    expect(await openUnder(dir)).toEqual([path]);
    files.closeAll();
    await expect.poll(() => openUnder(dir)).toEqual([]);
  });

  it('keeps at most `keptOpen` files open, closing the least recently used', async () => {
    files = new OpenFiles(3);
    const paths = Array.from({ length: 6 }, (_, i) => join(dir, `pack-${i}`));
    for (const path of paths) await writeFile(path, path);
    for (const path of paths) expect(await readAll(files, path)).toBe(path);
    await expect.poll(async () => (await openUnder(dir)).sort()).toEqual(paths.slice(3));
  });

  it('closes files once idle', async () => {
    files = new OpenFiles(16, 50);
    const path = join(dir, 'pack');
    await writeFile(path, 'x');
    await readAll(files, path);
    expect(await openUnder(dir)).toEqual([path]);
    await expect.poll(() => openUnder(dir), { timeout: 2000 }).toEqual([]);
  });

  it('opens the file again once forgotten, and after a failed open', async () => {
    files = new OpenFiles();
    const path = join(dir, 'pack');
    await expect(readAll(files, path)).rejects.toMatchObject({ code: 'ENOENT' });
    await writeFile(path, 'first');
    expect(await readAll(files, path)).toBe('first');
    await unlink(path);
    await writeFile(path, 'second!');
    expect(await readAll(files, path)).toBe('first'); // still the open file: only `forget` says it was replaced
    files.forget(path);
    expect(await readAll(files, path)).toBe('second!');
    await expect.poll(() => openUnder(dir)).toEqual([path]);
  });

  it('closes a file forgotten while a read is under way only when that read ends', async () => {
    files = new OpenFiles();
    const path = join(dir, 'pack');
    await writeFile(path, 'bytes');
    let release!: () => void;
    const reading = files.use(path, async (handle) => {
      await new Promise<void>((resolve) => (release = resolve));
      const buffer = Buffer.alloc(5);
      await handle.read(buffer, 0, 5, 0);
      return buffer.toString();
    });
    await expect.poll(() => release).toBeDefined();
    files.forget(path);
    release();
    expect(await reading).toBe('bytes');
    await expect.poll(() => openUnder(dir)).toEqual([]);
  });
});
