// The LUKS mapper on headers made by cryptsetup luksFormat (a fast PBKDF, no mapping): it
// never maps, and its reason names the version, UUID and cipher that `cryptsetup luksDump`
// shows. Damaged headers are refused with their own reason; either way the volume is imaged
// exactly.
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InconsistentMetadataError } from './inconsistent.js';
import { mapLuksUsedBlocks, readLuksHeader } from './luks.js';
import { bytesReader, writeStaleImage } from './test-support.js';

const MiB = 1024 * 1024;
const run = (command: string, args: string[], input?: string): string => execFileSync(command, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });

let workDir: string;
beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'cairn-luks-'));
});
afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

async function luksFormat(type: 'luks1' | 'luks2', cipher: string): Promise<{ image: string; bytes: Buffer }> {
  const image = path.join(workDir, `${type}-${cipher}.img`);
  await writeStaleImage(image, 24 * MiB);
  run('cryptsetup', ['luksFormat', '--type', type, '-q', '--cipher', cipher, '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000', '--key-file', '-', image], 'secret');
  return { image, bytes: await readFile(image) };
}

async function refusal(bytes: Uint8Array): Promise<string> {
  try {
    await mapLuksUsedBlocks(bytesReader(bytes));
  } catch (err) {
    expect(err).toBeInstanceOf(InconsistentMetadataError);
    return (err as Error).message;
  }
  throw new Error('the LUKS mapper returned a map');
}

describe('mapLuksUsedBlocks', () => {
  for (const [type, cipher] of [['luks1', 'aes-xts-plain64'], ['luks2', 'aes-xts-plain64'], ['luks2', 'aes-cbc-essiv:sha256']] as const) {
    it(`${type} with ${cipher}: refuses to map, naming what luksDump shows`, async () => {
      const { image, bytes } = await luksFormat(type, cipher);
      const dump = run('cryptsetup', ['luksDump', image]);
      const uuid = /^UUID:\s+(\S+)$/m.exec(dump)![1]!;
      const version = type === 'luks1' ? 1 : 2;
      expect(await refusal(bytes)).toBe(`LUKS${version} encrypted volume (UUID ${uuid}, ${cipher}): the payload is opaque without the key`);
      const header = await readLuksHeader(bytesReader(bytes));
      const offset = type === 'luks1' ? Number(/^Payload offset:\s+(\d+)$/m.exec(dump)![1]) * 512 : Number(/offset:\s+(\d+) \[bytes\]/.exec(dump)![1]);
      expect(header).toEqual({ version, uuid, cipher, payloadOffset: offset });
    });
  }

  it('refuses damaged headers with their own reason', async () => {
    const { bytes: luks2 } = await luksFormat('luks2', 'aes-xts-plain64');
    const flipped = Buffer.from(luks2);
    flipped[4096 + 10] ^= 1; // inside the JSON area, under the header checksum
    expect(await refusal(flipped)).toMatch(/^LUKS: the primary LUKS2 header fails its sha256 checksum/);
    const badSize = Buffer.from(luks2);
    badSize.writeBigUInt64BE(12345n, 8);
    expect(await refusal(badSize)).toMatch(/^LUKS: LUKS2 header size 12345 is not valid/);
    const { bytes: luks1 } = await luksFormat('luks1', 'aes-xts-plain64');
    const far = Buffer.from(luks1);
    far.writeUInt32BE(0xffffff, 104);
    expect(await refusal(far)).toMatch(/^LUKS: LUKS1 header puts the payload at byte \d+, outside the volume/);
    const version3 = Buffer.from(luks1);
    version3.writeUInt16BE(3, 6);
    expect(await refusal(version3)).toMatch(/^LUKS: LUKS version 3 is not known/);
  });
});
