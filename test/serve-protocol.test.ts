import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { NBD, NbdTestClient, goData } from '@cairn/core/testing';
import {
  MiB,
  PASSWORD_ENV,
  backup,
  expectCleanFailure,
  expectSuccess,
  init,
  makeExt4,
  makeGptDisk,
  restore,
  run,
  runCli,
  sameBytes,
  startServe,
  tempDir,
  useScope,
  useSuiteScope,
  writeJob,
  type BackupSummary,
  type PlacedPartition,
} from './utils/index.js';

/*
 * `cairn serve` of a real snapshot (a GPT disk with two ext4 partitions, backed up in used
 * mode) against real NBD clients: libnbd's nbdinfo and nbdcopy, qemu-img, and a raw client
 * for what real clients never send. What they read must be what `cairn restore` writes.
 */

const DISK = 48 * MiB;

describe('cairn serve', () => {
  const scope = useSuiteScope();
  let dir: string;
  let job: string;
  let made: BackupSummary;
  let placed: PlacedPartition[];
  let restored: string;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-serve-');
    const p1 = await makeExt4(dir, 'p1', 16 * MiB, { seed: 161, randomBytes: 2 * MiB, textBytes: 256 * 1024 });
    const p2 = await makeExt4(dir, 'p2', 24 * MiB, { seed: 162, randomBytes: 6 * MiB, textBytes: 512 * 1024 }, { stale: true });
    placed = await makeGptDisk(join(dir, 'disk.img'), DISK, [
      { image: p1.image, size: 16 * MiB },
      { image: p2.image, size: 24 * MiB },
    ]);
    job = await writeJob(dir, { source: './disk.img', chunkSize: MiB, extra: { source: { type: 'volume', path: './disk.img', mode: 'used' } } });
    await init(job);
    made = await backup(job);
    restored = join(dir, 'restored.img');
    expectSuccess(await restore(job, made.snapshot, restored));
  });

  test('nbdinfo --list: the whole disk as the default export and each partition as pN, with sizes', async () => {
    const serve = await startServe(useScope(), job, 'latest', dir);
    expect(serve.ready.snapshot).toBe(made.snapshot);
    expect(serve.ready.exports.map((e) => [e.name, e.size, e.writable])).toEqual([
      ['', DISK, false],
      ['p1', 16 * MiB, false],
      ['p2', 24 * MiB, false],
    ]);
    expect((await stat(serve.socket)).mode & 0o777).toBe(0o600);
    const listed = JSON.parse(await run('nbdinfo', ['--list', '--json', serve.uri()]));
    const sizes = Object.fromEntries(listed.exports.map((e: any) => [e['export-name'], e['export-size']]));
    expect(sizes).toEqual({ '': DISK, p1: 16 * MiB, p2: 24 * MiB });
    for (const e of listed.exports) expect(e).toMatchObject({ is_read_only: true, contexts: ['base:allocation'] });
    expect(listed.exports.find((e: any) => e['export-name'] === 'p2').description).toMatch(/partition 2/);
  });

  test('nbdinfo --map: unused blocks of the used-mode snapshot are holes, and they read as zeros', async () => {
    const serve = await startServe(useScope(), job, made.snapshot.slice(0, 8), dir);
    const map: Array<{ offset: number; length: number; type: number }> = JSON.parse(await run('nbdinfo', ['--map', '--json', serve.uri()]));
    expect(map.reduce((sum, e) => sum + e.length, 0)).toBe(DISK);
    const holes = map.filter((e) => e.type & NBD.NBD_STATE_HOLE);
    const holeBytes = holes.reduce((sum, e) => sum + e.length, 0);
    // Most of both file systems is free, and the stale bytes in p2's free space are not data.
    expect(holeBytes).toBeGreaterThanOrEqual(made.chunks.unused * MiB);
    const image = await readFile(restored);
    for (const hole of holes) expect(image.subarray(hole.offset, hole.offset + hole.length).every((b) => b === 0)).toBe(true);
  });

  test('nbdcopy of the disk and of a partition equals what cairn restore writes', async () => {
    const serve = await startServe(useScope(), job, 'latest', dir);
    await run('nbdcopy', [serve.uri(), join(dir, 'copied.img')]);
    expect(await sameBytes(join(dir, 'copied.img'), restored)).toBe(true);
    await run('nbdcopy', ['--connections=4', serve.uri('p2'), join(dir, 'p2-copied.img')]);
    const region = placed[1]!;
    const partition = (await readFile(restored)).subarray(region.offset, region.offset + region.size);
    expect((await readFile(join(dir, 'p2-copied.img'))).equals(partition)).toBe(true);
    await run('e2fsck', ['-fn', join(dir, 'p2-copied.img')]);
  });

  test('qemu-img convert to qcow2 and vhdx compares equal to the restored image', async () => {
    const serve = await startServe(useScope(), job, 'latest', dir);
    for (const format of ['qcow2', 'vhdx']) {
      const out = join(dir, `disk.${format}`);
      await run('qemu-img', ['convert', '-f', 'raw', '-O', format, serve.uri(), out]);
      await run('qemu-img', ['compare', '-f', format, '-F', 'raw', out, restored]);
    }
  });

  test('protocol edge cases against the real server: unknown option, read past the end, zero-length read, 50 clients', async () => {
    const serve = await startServe(useScope(), job, 'latest', dir);
    const address = { socket: serve.socket };
    const image = await readFile(restored);
    const client = await NbdTestClient.connect(address);
    client.sendClientFlags();
    expect((await client.option(0x7777, Buffer.from('?'))).map((r) => r.type)).toEqual([NBD.NBD_REP_ERR_UNSUP]);
    expect((await client.option(NBD.NBD_OPT_GO, goData('p9'))).map((r) => r.type)).toEqual([NBD.NBD_REP_ERR_UNKNOWN]);
    await client.go('p1', { structured: true });
    client.sendRequest({ type: NBD.NBD_CMD_READ, cookie: 1n, offset: 16 * MiB - 4096, length: 8192 });
    expect((await client.readStructuredRead(16 * MiB - 4096, 8192)).error).toBe(NBD.NBD_EINVAL);
    client.sendRequest({ type: NBD.NBD_CMD_READ, cookie: 2n, offset: 4096, length: 0 });
    expect(await client.readReply()).toMatchObject({ cookie: 2n, type: NBD.NBD_REPLY_TYPE_NONE, flags: NBD.NBD_REPLY_FLAG_DONE });
    client.close();

    const clients = await Promise.all(Array.from({ length: 50 }, () => NbdTestClient.connect(address)));
    await Promise.all(
      clients.map(async (c, i) => {
        await c.go('', { structured: i % 2 === 0 });
        const offset = i * 900 * 1024;
        const length = 128 * 1024 + i * 4096;
        c.sendRequest({ type: NBD.NBD_CMD_READ, cookie: BigInt(i), offset, length });
        const data = i % 2 === 0 ? (await c.readStructuredRead(offset, length)).data : ((await c.readReply(() => length)) as { data: Buffer }).data;
        expect(data.equals(image.subarray(offset, offset + length))).toBe(true);
      }),
    );
    for (const c of clients) c.close();
  });

  test('SIGTERM with a client connected: exit 0, the socket removed, the repository unchanged', async () => {
    const repoFiles = async () => (await readdir(join(dir, 'repo'), { recursive: true })).filter((f) => !f.startsWith('locks')).sort();
    const before = await repoFiles();
    const serve = await startServe(useScope(), job, 'latest', dir);
    const client = await NbdTestClient.connect({ socket: serve.socket });
    await client.go('');
    const result = await serve.stop();
    expectSuccess(result);
    await client.closed();
    await expect(stat(serve.socket)).rejects.toThrow(/ENOENT/);
    expect(await repoFiles()).toEqual(before);
    expectSuccess(await runCli(['check', job, '--read-data'], { env: PASSWORD_ENV }));
  });

  test('--listen: TCP on loopback prints nbd://; another address needs --allow-remote and then warns', async () => {
    const serve = await startServe(useScope(), job, 'latest', dir, ['--listen', '127.0.0.1:0']);
    if (!('port' in serve.ready.listening)) throw new Error('not on TCP');
    expect(serve.ready.uri).toBe(`nbd://127.0.0.1:${serve.ready.listening.port}`);
    expect(Number((await run('nbdinfo', ['--size', serve.uri('p1')])).trim())).toBe(16 * MiB);

    const refused = await runCli(['serve', job, 'latest', '--listen', '0.0.0.0:0'], { env: PASSWORD_ENV });
    expectCleanFailure(refused, 2, /--allow-remote/);
    expectCleanFailure(await runCli(['serve', job, 'latest', '--listen', 'nowhere'], { env: PASSWORD_ENV }), 2, /HOST:PORT/);

    const remote = await startServe(useScope(), job, 'latest', dir, ['--listen', '0.0.0.0:0', '--allow-remote']);
    const stopped = await remote.stop();
    expectSuccess(stopped);
    expect(stopped.stderr).toMatch(/no authentication.*clear text/);
  });
});
