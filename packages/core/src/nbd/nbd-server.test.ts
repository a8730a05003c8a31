import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createSecureContext } from 'node:tls';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryExport, NbdTestClient, goData, metaContextData } from '../testing/index.js';
import type { ExportSource } from './export-source.js';
import { NbdServer } from './nbd-server.js';
import * as P from './nbd-protocol.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

/** 8 MiB: data, a 3 MiB hole, data, a 1 MiB hole at the end. */
function diskImage(): { data: Buffer; holes: Array<{ offset: number; length: number }> } {
  const data = Buffer.alloc(8 * MiB);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32BE((i * 2654435761) >>> 0, i);
  const holes = [
    { offset: 2 * MiB, length: 3 * MiB },
    { offset: 7 * MiB, length: MiB },
  ];
  for (const hole of holes) data.fill(0, hole.offset, hole.offset + hole.length);
  return { data, holes };
}

let dir: string;
let socket: string;
let server: NbdServer;
let disk: MemoryExport;
let errors: string[];

async function startServer(exports: ExportSource[], options: { maxInFlight?: number } = {}): Promise<void> {
  errors = [];
  const logger = { debug() {}, info() {}, warn: (m: string) => errors.push(m), error: (m: string) => errors.push(m) };
  server = new NbdServer({ exports, logger, ...options });
  await server.listen({ socket });
}

const uri = (name = '') => `nbd+unix:///${name}?socket=${socket}`;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-nbd-'));
  socket = join(dir, 'nbd.sock');
  const image = diskImage();
  disk = new MemoryExport(image.data, { description: 'the whole disk', holes: image.holes });
  const p1 = new MemoryExport(image.data.subarray(MiB, 2 * MiB), { name: 'p1', description: 'partition 1 (ext4)' });
  await startServer([disk, p1]);
});

afterEach(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

describe('NbdServer with real clients (libnbd, qemu-img)', () => {
  it('nbdinfo --list shows every export with its size and description; the socket is private', async () => {
    const { stdout } = await run('nbdinfo', ['--list', '--json', uri()]);
    const listed = JSON.parse(stdout);
    expect(listed.protocol).toBe('newstyle-fixed');
    expect(listed.structured).toBe(true);
    const byName = Object.fromEntries(listed.exports.map((e: any) => [e['export-name'], e]));
    expect(Object.keys(byName).sort()).toEqual(['', 'p1']);
    expect(byName['']).toMatchObject({ 'export-size': 8 * MiB, description: 'the whole disk', is_read_only: true, can_multi_conn: true, contexts: ['base:allocation'] });
    expect(byName['p1']).toMatchObject({ 'export-size': MiB, description: 'partition 1 (ext4)', block_size_minimum: 1, block_size_preferred: 4096, block_size_maximum: 32 * MiB });
    expect((await stat(socket)).mode & 0o777).toBe(0o600);
  });

  it('nbdinfo --map reports the holes as holes that read as zeros', async () => {
    const { stdout } = await run('nbdinfo', ['--map', '--json', uri()]);
    const map = JSON.parse(stdout).map((e: any) => [e.offset, e.length, e.type]);
    expect(map).toEqual([
      [0, 2 * MiB, 0],
      [2 * MiB, 3 * MiB, P.NBD_STATE_HOLE | P.NBD_STATE_ZERO],
      [5 * MiB, 2 * MiB, 0],
      [7 * MiB, MiB, P.NBD_STATE_HOLE | P.NBD_STATE_ZERO],
    ]);
  });

  it('nbdcopy of the disk and of a partition equals the buffer', async () => {
    await run('nbdcopy', [uri(), join(dir, 'disk.img')]);
    expect((await readFile(join(dir, 'disk.img'))).equals(disk.data)).toBe(true);
    await run('nbdcopy', ['--connections=4', '--requests=16', uri('p1'), join(dir, 'p1.img')]);
    expect((await readFile(join(dir, 'p1.img'))).equals(disk.data.subarray(MiB, 2 * MiB))).toBe(true);
  });

  it('qemu-img reads it: info, and convert to qcow2 that compares equal', async () => {
    const { stdout } = await run('qemu-img', ['info', '--output=json', uri()]);
    expect(JSON.parse(stdout)['virtual-size']).toBe(8 * MiB);
    await writeFile(join(dir, 'disk.raw'), disk.data);
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', uri(), join(dir, 'disk.qcow2')]);
    await run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', join(dir, 'disk.qcow2'), join(dir, 'disk.raw')]);
  });

  it('qemu-io writes to a writable export, reads them back, flushes', async () => {
    await server.close();
    const writable = new MemoryExport(Buffer.alloc(MiB), { writable: true });
    await startServer([writable]);
    await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 4096 8192', '-c', 'write -z 65536 4096', '-c', 'flush', uri()]);
    expect(writable.data.subarray(4096, 12288).every((b) => b === 0x5a)).toBe(true);
    expect(writable.flushes).toBeGreaterThan(0);
    const { stdout } = await run('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0x5a 4096 8192', uri()]);
    expect(stdout).toMatch(/read 8192\/8192 bytes/);
  });

  it('refuses writes to a read-only export (EPERM)', async () => {
    const attempt = run('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 4096', uri()]);
    await expect(attempt).rejects.toThrow(/read-only|Operation not permitted|Permission/i);
    expect(disk.data.subarray(0, 4096).some((b) => b !== 1)).toBe(true);
  });
});

describe('NbdServer handshake, byte by byte', () => {
  it('greets with NBDMAGIC, IHAVEOPT and FIXED_NEWSTYLE|NO_ZEROES', async () => {
    const client = await NbdTestClient.connect({ socket });
    expect(client.handshakeFlags).toBe(P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES);
    client.close();
  });

  it('answers an unknown option with NBD_REP_ERR_UNSUP and goes on serving the connection', async () => {
    const client = await NbdTestClient.connect({ socket });
    client.sendClientFlags();
    const [unsupported] = await client.option(42, Buffer.from('whatever'));
    expect(unsupported).toMatchObject({ option: 42, type: P.NBD_REP_ERR_UNSUP });
    const { size } = await client.go('p1');
    expect(size).toBe(MiB);
    client.sendRequest({ type: P.NBD_CMD_READ, cookie: 7n, offset: 0, length: 512 });
    const reply = await client.readReply(() => 512);
    expect(reply).toMatchObject({ kind: 'simple', cookie: 7n, error: 0 });
    expect((reply as { data: Buffer }).data.equals(disk.data.subarray(MiB, MiB + 512))).toBe(true);
    client.close();
  });

  it('NBD_OPT_LIST lists the exports; NBD_OPT_INFO and NBD_OPT_GO of an unknown export are NBD_REP_ERR_UNKNOWN', async () => {
    const client = await NbdTestClient.connect({ socket });
    client.sendClientFlags();
    const list = await client.option(P.NBD_OPT_LIST);
    expect(list.map((r) => r.type)).toEqual([P.NBD_REP_SERVER, P.NBD_REP_SERVER, P.NBD_REP_ACK]);
    const names = list.slice(0, 2).map((r) => r.data.toString('utf8', 4, 4 + r.data.readUInt32BE(0)));
    expect(names.sort()).toEqual(['', 'p1']);
    expect((await client.option(P.NBD_OPT_LIST, Buffer.from('x'))).at(-1)!.type).toBe(P.NBD_REP_ERR_INVALID);
    expect((await client.option(P.NBD_OPT_INFO, goData('p9'))).map((r) => r.type)).toEqual([P.NBD_REP_ERR_UNKNOWN]);
    const info = await client.option(P.NBD_OPT_INFO, goData('p1', [P.NBD_INFO_DESCRIPTION]));
    expect(info.at(-1)!.type).toBe(P.NBD_REP_ACK);
    expect(info.some((r) => r.type === P.NBD_REP_INFO && r.data.readUInt16BE(0) === P.NBD_INFO_DESCRIPTION && r.data.toString('utf8', 2) === 'partition 1 (ext4)')).toBe(true);
    expect((await client.option(P.NBD_OPT_GO, goData('nope'))).map((r) => r.type)).toEqual([P.NBD_REP_ERR_UNKNOWN]);
    expect((await client.option(P.NBD_OPT_GO, Buffer.from([0, 0, 0, 9, 1]))).map((r) => r.type)).toEqual([P.NBD_REP_ERR_INVALID]);
    // Still usable after all those refusals.
    expect((await client.go('')).size).toBe(8 * MiB);
    client.close();
  });

  it('NBD_OPT_ABORT is acknowledged and the server closes the connection', async () => {
    const client = await NbdTestClient.connect({ socket });
    client.sendClientFlags();
    const [reply] = await client.option(P.NBD_OPT_ABORT);
    expect(reply).toMatchObject({ option: P.NBD_OPT_ABORT, type: P.NBD_REP_ACK });
    await client.closed();
  });

  it('old-style NBD_OPT_EXPORT_NAME: size, flags and 124 zeros unless NO_ZEROES; an unknown name ends the session', async () => {
    const withZeros = await NbdTestClient.connect({ socket });
    withZeros.sendClientFlags(P.NBD_FLAG_C_FIXED_NEWSTYLE);
    withZeros.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from('p1'));
    const reply = await withZeros.read(134);
    expect(Number(reply.readBigUInt64BE(0))).toBe(MiB);
    expect(reply.readUInt16BE(8) & (P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_READ_ONLY)).toBe(P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_READ_ONLY);
    expect(reply.subarray(10).every((b) => b === 0)).toBe(true);
    withZeros.sendRequest({ type: P.NBD_CMD_READ, cookie: 1n, offset: 4096, length: 4096 });
    const read = await withZeros.readReply(() => 4096);
    expect((read as { data: Buffer }).data.equals(disk.data.subarray(MiB + 4096, MiB + 8192))).toBe(true);
    withZeros.sendRequest({ type: P.NBD_CMD_DISC, cookie: 2n, offset: 0, length: 0 });
    await withZeros.closed();

    const unknown = await NbdTestClient.connect({ socket });
    unknown.sendClientFlags();
    unknown.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from('p7'));
    await unknown.closed();
  });

  it('refuses STARTTLS without a certificate (NBD_REP_ERR_POLICY) and unknown client flags (disconnect)', async () => {
    const client = await NbdTestClient.connect({ socket });
    client.sendClientFlags();
    expect((await client.option(P.NBD_OPT_STARTTLS)).map((r) => r.type)).toEqual([P.NBD_REP_ERR_POLICY]);
    client.close();
    const rude = await NbdTestClient.connect({ socket });
    rude.sendClientFlags(0x80);
    await rude.closed();
  });

  it('lists base:allocation, and selects it only after structured replies', async () => {
    const client = await NbdTestClient.connect({ socket });
    client.sendClientFlags();
    expect((await client.option(P.NBD_OPT_SET_META_CONTEXT, metaContextData('', [P.BASE_ALLOCATION]))).at(-1)!.type).toBe(P.NBD_REP_ERR_INVALID);
    const listed = await client.option(P.NBD_OPT_LIST_META_CONTEXT, metaContextData('', ['base:']));
    expect(listed.map((r) => [r.type, r.data.toString('utf8', 4)])).toEqual([[P.NBD_REP_META_CONTEXT, 'base:allocation'], [P.NBD_REP_ACK, '']]);
    expect((await client.option(P.NBD_OPT_LIST_META_CONTEXT, metaContextData('', ['qemu:dirty-bitmap:x']))).map((r) => r.type)).toEqual([P.NBD_REP_ACK]);
    await client.expectAck(P.NBD_OPT_STRUCTURED_REPLY);
    const set = await client.expectAck(P.NBD_OPT_SET_META_CONTEXT, metaContextData('', [P.BASE_ALLOCATION, 'x-other:thing']));
    expect(set).toHaveLength(2);
    expect(set[0]!.data.readUInt32BE(0)).not.toBe(0);
    client.close();
  });
});

describe('NbdServer transmission, byte by byte', () => {
  it('a read past the end is EINVAL (simple and structured); the connection goes on', async () => {
    const simple = await NbdTestClient.connect({ socket });
    await simple.go('p1');
    simple.sendRequest({ type: P.NBD_CMD_READ, cookie: 1n, offset: MiB - 512, length: 1024 });
    expect(await simple.readReply(() => 1024)).toMatchObject({ kind: 'simple', cookie: 1n, error: P.NBD_EINVAL, data: Buffer.alloc(0) });
    simple.sendRequest({ type: P.NBD_CMD_READ, cookie: 2n, offset: MiB - 512, length: 512 });
    expect(await simple.readReply(() => 512)).toMatchObject({ cookie: 2n, error: 0 });
    simple.close();

    const structured = await NbdTestClient.connect({ socket });
    await structured.go('p1', { structured: true });
    structured.sendRequest({ type: P.NBD_CMD_READ, cookie: 3n, offset: 2 ** 40, length: 512 });
    const failed = await structured.readStructuredRead(2 ** 40, 512);
    expect(failed.error).toBe(P.NBD_EINVAL);
    expect(failed.message).toMatch(/past the end/);
    structured.close();
  });

  it('a zero-length read is answered, without data', async () => {
    const simple = await NbdTestClient.connect({ socket });
    await simple.go('');
    simple.sendRequest({ type: P.NBD_CMD_READ, cookie: 9n, offset: 100, length: 0 });
    expect(await simple.readReply()).toMatchObject({ kind: 'simple', cookie: 9n, error: 0, data: Buffer.alloc(0) });
    simple.close();
    const structured = await NbdTestClient.connect({ socket });
    await structured.go('', { structured: true });
    structured.sendRequest({ type: P.NBD_CMD_READ, cookie: 10n, offset: 8 * MiB, length: 0 });
    expect(await structured.readReply()).toMatchObject({ kind: 'structured', cookie: 10n, flags: P.NBD_REPLY_FLAG_DONE, type: P.NBD_REPLY_TYPE_NONE });
    structured.close();
  });

  it('structured reads send holes as NBD_REPLY_TYPE_OFFSET_HOLE; NBD_CMD_FLAG_DF makes one data chunk', async () => {
    const client = await NbdTestClient.connect({ socket });
    const { flags } = await client.go('', { structured: true });
    expect(flags & P.NBD_FLAG_SEND_DF).toBeTruthy();
    client.sendRequest({ type: P.NBD_CMD_READ, cookie: 1n, offset: MiB, length: 5 * MiB });
    const read = await client.readStructuredRead(MiB, 5 * MiB);
    expect(read.chunkTypes).toEqual([P.NBD_REPLY_TYPE_OFFSET_DATA, P.NBD_REPLY_TYPE_OFFSET_HOLE, P.NBD_REPLY_TYPE_OFFSET_DATA, P.NBD_REPLY_TYPE_NONE]);
    expect(read.data.equals(disk.data.subarray(MiB, 6 * MiB))).toBe(true);
    client.sendRequest({ type: P.NBD_CMD_READ, cookie: 2n, offset: MiB, length: 5 * MiB, flags: P.NBD_CMD_FLAG_DF });
    const unfragmented = await client.readStructuredRead(MiB, 5 * MiB);
    expect(unfragmented.chunkTypes).toEqual([P.NBD_REPLY_TYPE_OFFSET_DATA, P.NBD_REPLY_TYPE_NONE]);
    expect(unfragmented.data.equals(disk.data.subarray(MiB, 6 * MiB))).toBe(true);
    client.close();
  });

  it('NBD_CMD_BLOCK_STATUS: extents of the context, one with REQ_ONE, EINVAL without a context', async () => {
    const client = await NbdTestClient.connect({ socket });
    await client.go('', { allocation: true });
    client.sendRequest({ type: P.NBD_CMD_BLOCK_STATUS, cookie: 1n, offset: MiB, length: 2 * MiB, flags: P.NBD_CMD_FLAG_REQ_ONE });
    const one = await client.readReply();
    expect(one).toMatchObject({ kind: 'structured', type: P.NBD_REPLY_TYPE_BLOCK_STATUS, flags: P.NBD_REPLY_FLAG_DONE });
    const payload = (one as { payload: Buffer }).payload;
    expect(payload.length).toBe(12);
    expect([payload.readUInt32BE(4), payload.readUInt32BE(8)]).toEqual([MiB, 0]);
    client.sendRequest({ type: P.NBD_CMD_BLOCK_STATUS, cookie: 2n, offset: MiB, length: 2 * MiB });
    const both = (await client.readReply()) as { payload: Buffer };
    expect([both.payload.readUInt32BE(4), both.payload.readUInt32BE(8), both.payload.readUInt32BE(12), both.payload.readUInt32BE(16)]).toEqual([MiB, 0, MiB, 3]);
    client.close();

    const without = await NbdTestClient.connect({ socket });
    await without.go('', { structured: true });
    without.sendRequest({ type: P.NBD_CMD_BLOCK_STATUS, cookie: 3n, offset: 0, length: 4096 });
    const refused = await without.readReply();
    expect(refused).toMatchObject({ kind: 'structured', type: P.NBD_REPLY_TYPE_ERROR });
    expect((refused as { payload: Buffer }).payload.readUInt32BE(0)).toBe(P.NBD_EINVAL);
    without.close();
  });

  it('answers pipelined requests by cookie, FLUSH and CACHE too; unknown commands and writes are refused', async () => {
    const client = await NbdTestClient.connect({ socket });
    await client.go('');
    const lengths = new Map<bigint, number>();
    for (let i = 0; i < 40; i++) {
      lengths.set(BigInt(1000 + i), 4096 * (1 + (i % 5)));
      client.sendRequest({ type: P.NBD_CMD_READ, cookie: BigInt(1000 + i), offset: i * 65536, length: 4096 * (1 + (i % 5)) });
    }
    client.sendRequest({ type: P.NBD_CMD_FLUSH, cookie: 1n, offset: 0, length: 0 });
    client.sendRequest({ type: P.NBD_CMD_CACHE, cookie: 2n, offset: 0, length: MiB });
    client.sendRequest({ type: 77, cookie: 3n, offset: 0, length: 0 });
    client.sendRequest({ type: P.NBD_CMD_WRITE, cookie: 4n, offset: 0, length: 4, data: Buffer.from('oops') });
    client.sendRequest({ type: P.NBD_CMD_TRIM, cookie: 5n, offset: 0, length: 4096 });
    const errorsByCookie = new Map<bigint, number>();
    for (let n = 0; n < 45; n++) {
      const reply = await client.readReply((cookie) => lengths.get(cookie) ?? 0);
      if (reply.kind !== 'simple') throw new Error('a structured reply without negotiation');
      errorsByCookie.set(reply.cookie, reply.error);
      const i = Number(reply.cookie) - 1000;
      if (i >= 0) expect(reply.data.equals(disk.data.subarray(i * 65536, i * 65536 + lengths.get(reply.cookie)!))).toBe(true);
    }
    expect([1n, 2n, 3n, 4n, 5n].map((c) => errorsByCookie.get(c))).toEqual([0, 0, P.NBD_EINVAL, P.NBD_EPERM, P.NBD_EPERM]);
    expect(errorsByCookie.size).toBe(45);
    client.close();
  });

  it('a failing read of the export is EIO and logged; the connection keeps serving', async () => {
    await server.close();
    const flaky = new MemoryExport(Buffer.alloc(MiB, 7), { name: 'flaky' });
    const read = flaky.read.bind(flaky);
    flaky.read = async (offset, length) => {
      if (offset === 0) throw new Error('the pack is gone');
      return read(offset, length);
    };
    await startServer([flaky]);
    const client = await NbdTestClient.connect({ socket });
    await client.go('flaky', { structured: true });
    client.sendRequest({ type: P.NBD_CMD_READ, cookie: 1n, offset: 0, length: 4096 });
    const failed = await client.readStructuredRead(0, 4096);
    expect(failed.error).toBe(P.NBD_EIO);
    expect(errors.join('\n')).toMatch(/NBD_CMD_READ of 4096 bytes at 0 on export "flaky" failed: the pack is gone/);
    client.sendRequest({ type: P.NBD_CMD_READ, cookie: 2n, offset: 4096, length: 4096 });
    expect((await client.readStructuredRead(4096, 4096)).data.every((b) => b === 7)).toBe(true);
    client.close();
  });

  it('a client disconnecting in the middle of a reply leaves the others served', async () => {
    const other = await NbdTestClient.connect({ socket });
    await other.go('');
    const quitter = await NbdTestClient.connect({ socket });
    await quitter.go('');
    for (let i = 0; i < 8; i++) quitter.sendRequest({ type: P.NBD_CMD_READ, cookie: BigInt(i), offset: 0, length: 8 * MiB });
    await quitter.read(100);
    quitter.close();
    other.sendRequest({ type: P.NBD_CMD_READ, cookie: 1n, offset: 5 * MiB, length: MiB });
    const reply = await other.readReply(() => MiB);
    expect((reply as { data: Buffer }).data.equals(disk.data.subarray(5 * MiB, 6 * MiB))).toBe(true);
    other.close();
    await expect.poll(() => server.connections).toBe(0);
  });

  it('50 clients at once, each reading and checking its own range', async () => {
    const clients = await Promise.all(Array.from({ length: 50 }, () => NbdTestClient.connect({ socket })));
    await Promise.all(
      clients.map(async (client, i) => {
        const structured = i % 2 === 0;
        await client.go('', { structured });
        const offset = i * 160 * 1024;
        const length = 256 * 1024;
        client.sendRequest({ type: P.NBD_CMD_READ, cookie: BigInt(i), offset, length });
        const data = structured ? (await client.readStructuredRead(offset, length)).data : ((await client.readReply(() => length)) as { data: Buffer }).data;
        expect(data.equals(disk.data.subarray(offset, offset + length))).toBe(true);
      }),
    );
    expect(server.connections).toBe(50);
    for (const client of clients) client.close();
  });

  it('close() waits for requests in flight, ends every connection and removes the socket', async () => {
    await server.close();
    const slow = new MemoryExport(Buffer.alloc(MiB, 3));
    let reading!: () => void;
    const readStarted = new Promise<void>((resolve) => (reading = resolve));
    const read = slow.read.bind(slow);
    slow.read = async (offset, length) => {
      reading();
      await new Promise((resolve) => setTimeout(resolve, 300));
      return read(offset, length);
    };
    await startServer([slow]);
    const client = await NbdTestClient.connect({ socket });
    await client.go('');
    client.sendRequest({ type: P.NBD_CMD_READ, cookie: 1n, offset: 0, length: MiB });
    const reply = client.readReply(() => MiB);
    await readStarted;
    await server.close();
    expect(((await reply) as { data: Buffer }).data.every((b) => b === 3)).toBe(true);
    await client.closed();
    await expect(stat(socket)).rejects.toThrow(/ENOENT/);
  });
});

describe('NbdServer listening', () => {
  it('replaces a stale socket file, refuses a live one and a file that is not a socket', async () => {
    const second = new NbdServer({ exports: [disk] });
    await expect(second.listen({ socket })).rejects.toThrow(/in use/);
    await writeFile(join(dir, 'plain'), 'x');
    await expect(new NbdServer({ exports: [disk] }).listen({ socket: join(dir, 'plain') })).rejects.toThrow(/not a socket/);
  });

  it('listens on TCP, on a port of its choosing', async () => {
    const tcp = new NbdServer({ exports: [disk] });
    const address = await tcp.listen({ host: '127.0.0.1', port: 0 });
    try {
      if (!('port' in address)) throw new Error('no port');
      expect(address.port).toBeGreaterThan(0);
      const { stdout } = await run('nbdinfo', ['--size', `nbd://127.0.0.1:${address.port}`]);
      expect(Number(stdout.trim())).toBe(8 * MiB);
    } finally {
      await tcp.close();
    }
  });
});

describe('NbdServer with TLS (FORCEDTLS)', () => {
  it('requires STARTTLS before anything else; libnbd over TLS reads the export whole', async () => {
    const certs = join(dir, 'certs');
    await run('mkdir', ['-p', certs]);
    // libnbd looks for the CA as ca-cert.pem in the folder given; a self-signed certificate is its own CA.
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(certs, 'key.pem'), '-out', join(certs, 'ca-cert.pem'), '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost']);
    const tls = createSecureContext({ cert: await readFile(join(certs, 'ca-cert.pem')), key: await readFile(join(certs, 'key.pem')) });
    const secure = new NbdServer({ exports: [disk], tls });
    const tlsSocket = join(dir, 'tls.sock');
    await secure.listen({ socket: tlsSocket });
    try {
      const plain = await NbdTestClient.connect({ socket: tlsSocket });
      plain.sendClientFlags();
      expect((await plain.option(P.NBD_OPT_LIST)).map((r) => r.type)).toEqual([P.NBD_REP_ERR_TLS_REQD]);
      expect((await plain.option(P.NBD_OPT_GO, goData(''))).map((r) => r.type)).toEqual([P.NBD_REP_ERR_TLS_REQD]);
      plain.close();
      await expect(run('nbdinfo', ['--size', `nbd+unix:///?socket=${tlsSocket}`])).rejects.toThrow();
      const tlsUri = `nbds+unix:///?socket=${tlsSocket}&tls-certificates=${certs}&tls-hostname=localhost`;
      const { stdout } = await run('nbdinfo', ['--json', tlsUri]);
      expect(JSON.parse(stdout)).toMatchObject({ TLS: true, structured: true });
      await run('nbdcopy', [tlsUri, join(dir, 'over-tls.img')]);
      expect((await readFile(join(dir, 'over-tls.img'))).equals(disk.data)).toBe(true);
    } finally {
      await secure.close();
    }
  });
});
