// Random damage to an LVM2 physical volume's label, metadata area headers and text metadata,
// some with checksums left wrong and some made right again (as a buggy or hostile writer
// would). The mapper must either refuse (InconsistentMetadataError: the PV is then imaged
// exactly) or return a map that covers every extent the metadata in force gives an LV: never
// a crash, never an allocated extent left out.
//
// Rounds: CAIRN_FUZZ_ROUNDS (default 300); the seed CAIRN_LVM_FUZZ_SEED replays a failure.
// `node scripts/fuzz-lvm.mjs` (100,000 rounds)
// is the long run.
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Extent, LvmLayout, LvmLogicalVolumeLayout } from '@cairn/core';
import { makeLvmDisk, writeLvImage } from '../../../../test/utils/lvm.js';
import type { UsedBlockMap, UsedBlockMapper, UsedBlockMappers, VolumeReader } from '../extents.js';
import { mapExt4UsedBlocks } from './ext4.js';
import { InconsistentMetadataError } from './inconsistent.js';
import { USED_BLOCK_MAPPERS } from './index.js';
import { lvmCrc } from './lvm-label.js';
import { createLvmMapper } from './lvm.js';
import { fixLabel, fixMdaHeader, metadataAreas, metadataText, writeMetadataText, type Area } from './lvm-testing/test-support.js';
import { bytesReader, envInteger, mulberry32 } from './test-support.js';

const MiB = 1024 * 1024;
const DEFAULT_SEED = 20261202;
/**
 * The filesystem mappers inside LVs, memoized exactly: a mapper's result depends only on the
 * bytes it reads, so a call that reads the same bytes as an earlier one gets its result. The
 * LVs' contents are never damaged here, and this keeps 100,000 rounds to minutes.
 */
function memoized(mapper: UsedBlockMapper): UsedBlockMapper {
  type Read = { offset: number; length: number; bytes: Buffer };
  const entries: Array<{ size: number; reads: Read[]; result?: Awaited<ReturnType<UsedBlockMapper>>; error?: unknown }> = [];
  const replays = async (volume: VolumeReader, reads: Read[]) => {
    for (const r of reads) {
      const bytes = new Uint8Array(r.length);
      await volume.read(bytes, r.offset, r.length);
      if (!r.bytes.equals(bytes)) return false;
    }
    return true;
  };
  return async (volume) => {
    for (const entry of entries) {
      if (entry.size !== volume.size || !(await replays(volume, entry.reads))) continue;
      if (entry.error !== undefined) throw entry.error;
      return structuredClone(entry.result!);
    }
    const reads: Read[] = [];
    const recording: VolumeReader = {
      size: volume.size,
      async read(into, offset, length) {
        await volume.read(into, offset, length);
        reads.push({ offset, length, bytes: Buffer.from(into.subarray(0, length)) });
      },
    };
    if (entries.length >= 32) entries.shift();
    try {
      const result = await mapper(recording);
      entries.push({ size: volume.size, reads, result: structuredClone(result) });
      return result;
    } catch (error) {
      entries.push({ size: volume.size, reads, error });
      throw error;
    }
  };
}

const FUZZ_MAPPERS: UsedBlockMappers = new Map([...USED_BLOCK_MAPPERS].filter(([name]) => name !== 'lvm2').map(([name, mapper]) => [name, memoized(mapper)]));
/** The mapper under test: the production LVM2 mapper, with the memoized filesystem mappers inside. */
const mapLvm = createLvmMapper(() => FUZZ_MAPPERS);

let workDir: string;
let image: Uint8Array;
let areas: Area[];
let baseline: string;
/** What each round may touch, saved to put back: the label sectors and the start of each metadata area. */
let saved: Array<{ offset: number; bytes: Uint8Array }>;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'cairn-lvm-fuzz-'));
  const disk = await makeLvmDisk(workDir, 'pv', {
    size: 24 * MiB,
    table: 'none',
    vgName: 'fuzzvg',
    metadataCopies: 2,
    lvs: [
      { name: 'root', segments: [{ pvExtent: 8, extents: 5 }, { pvExtent: 1, extents: 3 }] },
      { name: 'fast', striped: { stripes: [{ pvExtent: 4 }, { pvExtent: 16 }], extentsPerStripe: 2, stripeSize: 128 * 1024 } },
      { name: 'raw', segments: [{ pvExtent: 13, extents: 2 }] },
    ],
  });
  for (const name of ['root', 'fast']) {
    const lvImage = path.join(workDir, `${name}.img`);
    const tree = path.join(workDir, `${name}-tree`);
    execFileSync('mkdir', ['-p', tree]);
    await writeFile(path.join(tree, 'data.bin'), Buffer.alloc(MiB + 12345, 7));
    execFileSync('truncate', ['-s', String(disk.lvs[name]!.size), lvImage]);
    execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', '-d', tree, lvImage]);
    await writeLvImage(disk.path, disk.lvs[name]!, lvImage);
  }
  image = new Uint8Array(await readFile(disk.path));
  areas = metadataAreas(image);
  baseline = JSON.stringify(await mapLvm(bytesReader(image)));
  saved = [{ offset: 0, bytes: image.slice(0, 4096) }, ...areas.map((a) => ({ offset: a.offset, bytes: image.slice(a.offset, a.offset + Math.min(a.size, 64 * 1024)) }))];
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

function restoreImage(): void {
  for (const { offset, bytes } of saved) image.set(bytes, offset);
}

type Random = () => number;
const pick = <T,>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
const below = (random: Random, n: number) => Math.floor(random() * n);

function flipBits(random: Random, offset: number, length: number): void {
  for (let i = 0, n = 1 + below(random, 4); i < n; i++) image[offset + below(random, length)] ^= 1 << below(random, 8);
}

const TYPES = ['thin', 'mirror', 'raid1', 'snapshot', 'cache', 'linear', 'error', 'thin-pool', 'striped', 'vdo', 'integrity'];

/** One edit of metadata text, of the kinds a careless or hostile writer makes. */
function editText(random: Random, text: string): string {
  const at = below(random, text.length);
  switch (below(random, 8)) {
    case 0: {
      const digits = [...text.matchAll(/\d+/g)];
      if (digits.length === 0) return text;
      const target = pick(random, digits);
      const replacement = pick(random, ['0', '1', String(below(random, 64)), String(Number(target[0]) + 1), '99999999999', '-1']);
      return text.slice(0, target.index) + replacement + text.slice(target.index! + target[0].length);
    }
    case 1: {
      const marks = [...text.matchAll(/[{}[\]",=]/g)];
      if (marks.length === 0) return text;
      const target = pick(random, marks);
      return text.slice(0, target.index) + text.slice(target.index! + 1);
    }
    case 2:
      return text.slice(0, at) + pick(random, ['{', '}', '[', ']', '"', ',', '=', '#', '\n', '\\', ' x ']) + text.slice(at);
    case 3: {
      const lines = text.split('\n');
      const i = below(random, lines.length);
      lines.splice(i, 0, lines[i]!);
      return lines.join('\n');
    }
    case 4: {
      const lines = text.split('\n');
      lines.splice(below(random, lines.length), 1);
      return lines.join('\n');
    }
    case 5:
      return text.replace(/seqno = \d+/, `seqno = ${below(random, 12)}`);
    case 6: {
      const types = [...text.matchAll(/type = "striped"/g)];
      if (types.length === 0) return text;
      const target = pick(random, types);
      return text.slice(0, target.index) + `type = "${pick(random, TYPES)}"` + text.slice(target.index! + target[0].length);
    }
    default:
      return text.slice(0, at);
  }
}

interface Round {
  kind: string;
  /** Checksums left wrong: the damaged structure must be refused or outweighed, so the map is the baseline's. */
  checksumsWrong: boolean;
}

function mutate(random: Random): Round {
  const area = pick(random, areas);
  switch (below(random, 6)) {
    case 0:
      flipBits(random, 512, 512);
      return { kind: 'label bits', checksumsWrong: true };
    case 1:
      flipBits(random, area.offset, 512);
      return { kind: 'mda header bits', checksumsWrong: true };
    case 2: {
      const { offset, text } = metadataText(image, area);
      flipBits(random, area.offset + offset, text.length);
      return { kind: 'text bits', checksumsWrong: true };
    }
    case 3:
      flipBits(random, 512 + 20, 200);
      fixLabel(image);
      return { kind: 'label edit, checksum fixed', checksumsWrong: false };
    case 4:
      flipBits(random, area.offset + 20, 48);
      fixMdaHeader(image, area);
      return { kind: 'mda header edit, checksum fixed', checksumsWrong: false };
    default: {
      let text = metadataText(image, area).text;
      for (let i = 0, n = 1 + below(random, 3); i < n; i++) text = editText(random, text);
      if (random() < 0.5) text = text.replace(/seqno = \d+/, 'seqno = 1000');
      writeMetadataText(image, area, text);
      return { kind: 'text edit, checksums fixed', checksumsWrong: false };
    }
  }
}

/** Whether sorted, non-overlapping `extents` cover [offset, offset + length): a binary search, touching runs joined. */
function covered(extents: readonly Extent[], offset: number, length: number): boolean {
  let lo = 0;
  let hi = extents.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (extents[mid]!.offset <= offset) lo = mid;
    else hi = mid - 1;
  }
  let at = offset;
  for (let i = lo; i < extents.length && extents[i]!.offset <= at && at < offset + length; i++) at = Math.max(at, extents[i]!.offset + extents[i]!.length);
  return at >= offset + length;
}

/** An LV's pieces on this PV as the layout describes it, worked out here on its own (linear and striped). */
function lvPieces(lvm: LvmLayout, lv: LvmLogicalVolumeLayout): Array<{ lvOffset: number; pvOffset: number; length: number }> {
  const E = lvm.vg.extentSize;
  const pieces: Array<{ lvOffset: number; pvOffset: number; length: number }> = [];
  for (const segment of lv.segments) {
    const stripes = segment.areas.length;
    const stripe = segment.stripeSize ?? (segment.extentCount / stripes) * E;
    const perStripe = (segment.extentCount / stripes) * E;
    for (let row = 0; row < perStripe / stripe; row++) {
      segment.areas.forEach((area, i) =>
        pieces.push({ lvOffset: segment.startExtent * E + (row * stripes + i) * stripe, pvOffset: lvm.pv.peStart + area.extent * E + row * stripe, length: stripe }),
      );
    }
  }
  return pieces;
}

const fsCache = new Map<string, Extent[]>();

/** The ext4 used blocks of an LV the mapper said it mapped, as PV ranges: they must all be in the map. */
async function ext4OnPv(lvm: LvmLayout, lv: LvmLogicalVolumeLayout): Promise<Extent[]> {
  const key = JSON.stringify([lvm.pv.peStart, lvm.vg.extentSize, lv.segments]);
  const cached = fsCache.get(key);
  if (cached) return cached;
  const pieces = lvPieces(lvm, lv);
  const lvBytes = new Uint8Array(lv.size);
  for (const p of pieces) lvBytes.set(image.subarray(p.pvOffset, p.pvOffset + p.length), p.lvOffset);
  const out: Extent[] = [];
  for (const used of await mapExt4UsedBlocks(bytesReader(lvBytes))) {
    for (const p of pieces) {
      const from = Math.max(used.offset, p.lvOffset);
      const to = Math.min(used.offset + used.length, p.lvOffset + p.length);
      if (from < to) out.push({ offset: p.pvOffset + from - p.lvOffset, length: to - from });
    }
  }
  fsCache.set(key, out);
  return out;
}

/** Extent starts on this PV that the verified text(s) with the seqno in force name in any `"pvN", extent` pair. */
function namedAreas(lvm: LvmLayout): Set<number> {
  const starts = new Set<number>();
  for (const area of metadataAreas(image)) {
    const header = new DataView(image.buffer, image.byteOffset + area.offset, 512);
    const size = Number(header.getBigUint64(48, true));
    const offset = Number(header.getBigUint64(40, true));
    if (lvmCrc(image.subarray(area.offset + 4, area.offset + 512)) !== header.getUint32(0, true) || offset < 512 || offset >= area.size || size > area.size) continue;
    const found = metadataText(image, area);
    const stored = new DataView(image.buffer, image.byteOffset + area.offset + 56, 4).getUint32(0, true);
    if (lvmCrc(Buffer.from(found.text, 'latin1')) !== stored || !new RegExp(`seqno = ${lvm.vg.seqno}\\b`).test(found.text)) continue;
    const lvs = found.text.slice(found.text.indexOf('logical_volumes'));
    for (const m of lvs.matchAll(new RegExp(`"${lvm.pv.name}",\\s*(\\d+)`, 'g'))) starts.add(Number(m[1]));
  }
  return starts;
}

/** What is wrong with a map the mapper returned for metadata whose checksums are right: nothing, or the first problem. */
async function problemWith(map: UsedBlockMap): Promise<string | undefined> {
  const { extents, lvm } = map;
  let end = -1;
  for (const e of extents) {
    if (!(e.length > 0) || e.offset <= end || e.offset + e.length > image.length) return `badly formed range at ${e.offset} (+${e.length})`;
    end = e.offset + e.length;
  }
  if (!lvm) return 'no lvm layout';
  if (!covered(extents, 0, 4096)) return 'the label sectors are not covered';
  // The metadata areas the label lists now (an edit with its checksum fixed may move them): LVM reads those.
  let listed: Area[] = [];
  try {
    listed = metadataAreas(image);
  } catch {
    // A label the test's own reader cannot follow: the layout's other checks still apply.
  }
  for (const area of listed) if (!covered(extents, area.offset, 512)) return `the metadata area header at ${area.offset} is not covered`;
  const E = lvm.vg.extentSize;
  const reported = new Set<number>();
  for (const lv of lvm.logicalVolumes) {
    for (const s of lv.segments) for (const a of s.areas) if (a.pv === lvm.pv.name) reported.add(a.extent);
    const here = lv.segments.flatMap((s) => s.areas.filter((a) => a.pv === lvm.pv.name).map((a) => ({ offset: lvm.pv.peStart + a.extent * E, length: (s.extentCount / s.areas.length) * E })));
    if (lv.mode === 'exact') {
      for (const r of here) if (!covered(extents, r.offset, r.length)) return `exact LV ${lv.name}: ${r.offset} (+${r.length}) not covered`;
    } else if (here.length > 0) {
      if (lv.filesystem !== 'ext4') return `LV ${lv.name} mapped as ${lv.filesystem}`;
      for (const r of await ext4OnPv(lvm, lv)) if (!covered(extents, r.offset, r.length)) return `LV ${lv.name}: used block at ${r.offset} (+${r.length}) not covered`;
    }
  }
  for (const start of namedAreas(lvm)) if (!reported.has(start)) return `extent ${start}, named in the metadata in force, belongs to no LV of the layout`;
  return undefined;
}

describe('LVM2 mapper under random damage', () => {
  it('refuses or maps every allocated extent, never crashes', { timeout: 3_600_000 }, async () => {
    const seed = envInteger('CAIRN_LVM_FUZZ_SEED', DEFAULT_SEED);
    const rounds = envInteger('CAIRN_FUZZ_ROUNDS', 300);
    const show = process.env['CAIRN_LVM_FUZZ_SHOW_ROUND'] ? envInteger('CAIRN_LVM_FUZZ_SHOW_ROUND', 0) : undefined;
    const random = mulberry32(seed);
    const outcomes = new Map<string, number>();
    const times = [0, 0];
    for (let round = 0; round < rounds; round++) {
      const { kind, checksumsWrong } = mutate(random);
      const message = `seed ${seed}, round ${round} (${kind})`;
      // CAIRN_LVM_FUZZ_SHOW_ROUND=<n> prints round n's metadata texts and skips checking the rounds before it.
      if (show !== undefined && round < show) {
        restoreImage();
        continue;
      }
      if (round === show) for (const area of areas) console.log(`area ${area.offset}:\n${metadataText(image, area).text}`);
      let result: UsedBlockMap | undefined;
      const t0 = performance.now();
      try {
        result = (await mapLvm(bytesReader(image))) as UsedBlockMap;
      } catch (err) {
        if (!(err instanceof InconsistentMetadataError)) throw new Error(`${message}: ${(err as Error).stack}`);
      }
      // A copy whose checksum fails is not believed: the layout is the undamaged one's, and the
      // map keeps what that one keeps (plus the damaged area whole).
      if (result && checksumsWrong) {
        const undamaged = JSON.parse(baseline) as UsedBlockMap;
        expect(JSON.stringify(result.lvm), message).toBe(JSON.stringify(undamaged.lvm));
        for (const e of undamaged.extents) if (!covered(result.extents, e.offset, e.length)) expect.fail(`${message}: ${e.offset} (+${e.length}) of the undamaged map is not covered`);
      }
      const t1 = performance.now();
      if (result && !checksumsWrong) {
        const problem = await problemWith(result);
        if (problem !== undefined) expect.fail(`${message}: ${problem}`);
      }
      times[0] += t1 - t0;
      times[1] += performance.now() - t1;
      const outcome = `${kind}: ${result ? (JSON.stringify(result) === baseline ? 'same map' : 'other map') : 'refused'}`;
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      restoreImage();
    }
    console.log(`LVM fuzz: ${rounds} rounds, seed ${seed}; ${(times[0]! / 1000).toFixed(1)} s mapping, ${(times[1]! / 1000).toFixed(1)} s checking\n${[...outcomes].sort().map(([k, n]) => `  ${k}: ${n}`).join('\n')}`);
    // The edits do reach the mapper: some rounds are accepted with a map other than the baseline's.
    if (rounds >= 100) expect([...outcomes.keys()].some((k) => k.endsWith('other map'))).toBe(true);
  });
});
