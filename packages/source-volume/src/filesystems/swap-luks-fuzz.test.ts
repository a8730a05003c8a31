// Random damage to swap headers (mkswap, 4 KiB and 64 KiB pages) and LUKS headers (cryptsetup
// luksFormat, LUKS1 and LUKS2): bit flips anywhere in the header, and values written into the
// fields the parsers read. The swap mapper must either refuse (InconsistentMetadataError: the
// area is then imaged exactly) or map exactly one header page of a version-1 area whose pages
// fit the volume, which blkid also takes for swap; the LUKS mapper must refuse every time (it
// never maps: the payload is opaque). Never another error, never a crash.
//
// Rounds per parser: CAIRN_FUZZ_ROUNDS (default 5,000); the seed CAIRN_SWAP_LUKS_FUZZ_SEED
// replays a failure. `node scripts/fuzz-swap-luks.mjs` (100,000 per parser) is the long run.
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { UsedBlockMapper } from '../extents.js';
import { InconsistentMetadataError } from './inconsistent.js';
import { mapLuksUsedBlocks } from './luks.js';
import { mapSwapUsedBlocks, parseSwapHeader } from './swap.js';
import { bytesReader, envInteger, mulberry32, writeStaleImage } from './test-support.js';

const MiB = 1024 * 1024;
const ROUNDS = envInteger('CAIRN_FUZZ_ROUNDS', 5000);
const SEED = envInteger('CAIRN_SWAP_LUKS_FUZZ_SEED', 20261202);
/** Damage stays in the first 64 KiB; each round copies them back rather than the whole image. */
const DAMAGED_SPAN = 65536;
/** The long run (100,000 rounds) takes minutes: the timeout grows with the rounds. */
const TIMEOUT_MS = Math.max(120_000, ROUNDS * 20);
/** Rounds whose accepted swap header blkid is asked about too (each one a process). */
const BLKID_SAMPLES = 40;
const run = (command: string, args: string[], input?: string): string => execFileSync(command, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });

let workDir: string;
beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'cairn-swap-luks-fuzz-'));
});
afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

type Random = () => number;
const pick = (random: Random, n: number) => Math.floor(random() * n);

/** Offsets the parsers read, so that damage hits them far more often than chance would. */
const SWAP_FIELDS = [1024, 1028, 1032, 1036, 1052];
const LUKS_FIELDS = [0, 6, 8, 40, 72, 104, 108, 112, 168, 208, 256, 448, 4096, 4200, 16384, 16390];

/** Damages `bytes` in place within `span`: a few bit flips, or a field overwritten. */
function damage(bytes: Buffer, span: number, fields: number[], random: Random): string {
  if (random() < 0.5) {
    const flips = 1 + pick(random, 4);
    for (let i = 0; i < flips; i++) bytes[pick(random, span)]! ^= 1 << pick(random, 8);
    return 'bit flips';
  }
  const at = fields[pick(random, fields.length)]! + pick(random, 8);
  const values = [0, 1, 0xff, 0x7fffffff, 0xffffffff, pick(random, 0x10000), 0x01000000];
  bytes.writeUInt32LE(values[pick(random, values.length)]! >>> 0, Math.min(at, bytes.length - 4));
  return 'field';
}

function tally(counts: Map<string, number>, key: string): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

/** The mapper's outcome: its map, or the refusal's reason; any other error fails the test. */
async function outcome(mapper: UsedBlockMapper, bytes: Buffer, where: string): Promise<{ map?: Awaited<ReturnType<UsedBlockMapper>>; refused?: string }> {
  try {
    return { map: await mapper(bytesReader(bytes)) };
  } catch (err) {
    if (!(err instanceof InconsistentMetadataError)) throw new Error(`${where}: ${(err as Error)?.stack ?? String(err)}`);
    return { refused: err.message.replace(/\d+/g, 'N').slice(0, 80) };
  }
}

describe('swap and LUKS headers under random damage', () => {
  it(`swap: ${ROUNDS} rounds map one valid header page or refuse (seed ${SEED})`, async () => {
    const areas: Buffer[] = [];
    for (const pageSize of [4096, 65536]) {
      const image = path.join(workDir, `swap-${pageSize}.img`);
      await writeStaleImage(image, 4 * MiB);
      run('mkswap', ['-q', '-p', String(pageSize), '-L', 'fuzz', image]);
      areas.push(await readFile(image));
    }
    const random = mulberry32(SEED);
    const counts = new Map<string, number>();
    let asked = 0;
    const working = areas.map((area) => Buffer.from(area));
    for (let round = 0; round < ROUNDS; round++) {
      const original = areas[round % areas.length]!;
      const bytes = working[round % areas.length]!;
      original.copy(bytes, 0, 0, DAMAGED_SPAN); // undo the last round's damage
      const kind = damage(bytes, random() < 0.8 ? 1100 : 65536, SWAP_FIELDS, random);
      const where = `swap round ${round} (seed ${SEED})`;
      const { map, refused } = await outcome(mapSwapUsedBlocks, bytes, where);
      if (refused) {
        tally(counts, `refused: ${refused}`);
        continue;
      }
      const header = parseSwapHeader(bytes, bytes.length);
      expect(map, where).toEqual([{ offset: 0, length: header.pageSize }]);
      expect(bytes.toString('latin1', header.pageSize - 10, header.pageSize), where).toBe('SWAPSPACE2');
      expect(bytes.readUInt32LE(1024), where).toBe(1);
      expect((header.lastPage + 1) * header.pageSize, where).toBeLessThanOrEqual(bytes.length);
      tally(counts, `mapped (${kind})`);
      if (asked < BLKID_SAMPLES && !bytes.subarray(0, 65536).equals(original.subarray(0, 65536))) {
        asked++;
        const image = path.join(workDir, 'swap-damaged.img');
        await writeFile(image, bytes);
        expect(run('blkid', ['-p', '-o', 'value', '-s', 'TYPE', image]).trim(), `${where}: blkid`).toBe('swap');
      }
    }
    console.log(`swap fuzz, seed ${SEED}: ${ROUNDS} rounds, blkid asked ${asked} times`, Object.fromEntries([...counts].sort((a, b) => b[1] - a[1])));
    expect([...counts.keys()].some((k) => k.startsWith('mapped')), 'some damage leaves a usable header').toBe(true);
  }, TIMEOUT_MS);

  it(`LUKS: ${ROUNDS} rounds are all refused, none crashes (seed ${SEED})`, async () => {
    const headers: Buffer[] = [];
    for (const type of ['luks1', 'luks2']) {
      const image = path.join(workDir, `${type}.img`);
      await writeStaleImage(image, 20 * MiB);
      run('cryptsetup', ['luksFormat', '--type', type, '-q', '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000', '--key-file', '-', image], 'secret');
      headers.push(await readFile(image));
    }
    const random = mulberry32(SEED + 1);
    const counts = new Map<string, number>();
    const working = headers.map((header) => Buffer.from(header));
    for (let round = 0; round < ROUNDS; round++) {
      const bytes = working[round % headers.length]!;
      headers[round % headers.length]!.copy(bytes, 0, 0, DAMAGED_SPAN); // undo the last round's damage
      damage(bytes, random() < 0.7 ? 4096 : 32768, LUKS_FIELDS, random);
      const where = `LUKS round ${round} (seed ${SEED})`;
      const { map, refused } = await outcome(mapLuksUsedBlocks, bytes, where);
      expect(map, `${where}: the LUKS mapper returned a map`).toBeUndefined();
      tally(counts, refused!.startsWith('LUKSN encrypted volume') ? 'refused: intact enough to name' : `refused: ${refused}`);
    }
    console.log(`LUKS fuzz, seed ${SEED}: ${ROUNDS} rounds`, Object.fromEntries([...counts].sort((a, b) => b[1] - a[1]).slice(0, 12)));
  }, TIMEOUT_MS);
});
