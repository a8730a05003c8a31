// The swap mapper on areas made by mkswap over stale bytes: the map is the header page alone,
// and a file holding that page and zeros after it is a swap area with the same UUID and label
// to blkid. Hostile headers are refused with the reason.
import { execFileSync } from 'node:child_process';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InconsistentMetadataError } from './inconsistent.js';
import { mapSwapUsedBlocks, parseSwapHeader } from './swap.js';
import { bytesReader, writeStaleImage } from './test-support.js';

const MiB = 1024 * 1024;
const UUID = '0b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9';
const run = (command: string, args: string[]): string => execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

let workDir: string;
beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'cairn-swap-'));
});
afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

async function makeSwap(name: string, size: number, args: string[]): Promise<string> {
  const image = path.join(workDir, name);
  await writeStaleImage(image, size);
  run('mkswap', ['-q', '-L', 'lbl', '-U', UUID, ...args, image]);
  return image;
}

function blkid(image: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const match of run('blkid', ['-p', '-o', 'export', image]).matchAll(/^(\w+)=(.*)$/gm)) fields[match[1]!] = match[2]!;
  return fields;
}

describe('mapSwapUsedBlocks', () => {
  for (const pageSize of [4096, 65536]) {
    it(`maps only the ${pageSize}-byte header page; header + zeros is the same swap area to blkid`, async () => {
      const image = await makeSwap(`swap-${pageSize}.img`, 8 * MiB, ['-p', String(pageSize)]);
      const bytes = await readFile(image);
      const extents = await mapSwapUsedBlocks(bytesReader(bytes));
      expect(extents).toEqual([{ offset: 0, length: pageSize }]);
      const header = parseSwapHeader(bytes, bytes.length);
      expect(header).toEqual({ pageSize, lastPage: (8 * MiB) / pageSize - 1, badPages: 0, uuid: UUID, label: 'lbl' });

      const restored = path.join(workDir, `restored-${pageSize}.img`);
      const out = await open(restored, 'w');
      await out.truncate(bytes.length);
      await out.write(bytes, 0, pageSize, 0);
      await out.close();
      expect(blkid(restored)).toMatchObject({ TYPE: 'swap', UUID, LABEL: 'lbl', VERSION: '1' });
    });
  }

  it('refuses a version 0 area, another byte order, an area larger than the volume and too many bad pages', async () => {
    const good = await readFile(await makeSwap('hostile.img', 4 * MiB, []));
    const refuse = async (change: (bytes: Buffer) => void, volume: Buffer | undefined, reason: RegExp) => {
      const bytes = Buffer.from(good);
      change(bytes);
      const attempt = mapSwapUsedBlocks(bytesReader(volume ?? bytes));
      await expect(attempt).rejects.toBeInstanceOf(InconsistentMetadataError);
      await expect(attempt).rejects.toThrow(reason);
    };
    await refuse((b) => b.write('SWAP-SPACE', 4086, 'latin1'), undefined, /version 0 swap area/);
    await refuse((b) => b.writeUInt32BE(1, 1024), undefined, /other byte order/);
    await refuse((b) => b.writeUInt32LE(2, 1024), undefined, /header version 2/);
    await refuse(() => {}, good.subarray(0, 2 * MiB), /counts 1024 pages of 4096 bytes but the volume holds only 2097152/);
    await refuse((b) => b.writeUInt32LE(5000, 1032), undefined, /5000 bad pages/);
    await refuse((b) => b.writeUInt32LE(3, 1028), undefined, /4 pages, fewer than the 10/);
    await refuse((b) => b.fill(0, 4086, 4096), undefined, /no swap signature/);
  });
});
