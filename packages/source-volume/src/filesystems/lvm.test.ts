import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Extent, LvmLayout } from '@cairn/core';
import { makeLvmDisk, writeLvImage, type LvmDisk } from '../../../../test/utils/lvm.js';
import { planExtents, type UsedBlockMap } from '../extents.js';
import { mapExt4UsedBlocks } from './ext4.js';
import { InconsistentMetadataError } from './inconsistent.js';
import { USED_BLOCK_MAPPERS } from './index.js';
import { fixLabel, metadataAreas, metadataText, withLvSections, withSeqno, writeMetadataText } from './lvm-testing/test-support.js';
import { parseLvmText } from './lvm-text.js';
import { bytesReader, expectWellFormed } from './test-support.js';

const MiB = 1024 * 1024;
const mapLvm = USED_BLOCK_MAPPERS.get('lvm2')!;

let workDir: string;
let disk: LvmDisk;
let pristine: Uint8Array;

/** A fresh copy of the PV, to damage or edit. */
const pv = () => new Uint8Array(pristine);
const map = async (bytes: Uint8Array) => (await mapLvm(bytesReader(bytes))) as UsedBlockMap;
const lvNamed = (lvm: LvmLayout | undefined, name: string) => lvm!.logicalVolumes.find((lv) => lv.name === name)!;

function covers(extents: readonly Extent[], offset: number, length: number): boolean {
  let at = offset;
  for (const e of extents) if (e.offset <= at && e.offset + e.length > at) at = Math.min(offset + length, e.offset + e.length);
  return at >= offset + length;
}

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'cairn-lvm-'));
  disk = await makeLvmDisk(workDir, 'pv', {
    size: 32 * MiB,
    table: 'none',
    vgName: 'unitvg',
    metadataCopies: 2,
    lvs: [
      { name: 'root', segments: [{ pvExtent: 10, extents: 6 }, { pvExtent: 1, extents: 4 }] },
      { name: 'fast', striped: { stripes: [{ pvExtent: 5 }, { pvExtent: 20 }], extentsPerStripe: 2, stripeSize: 64 * 1024 } },
      { name: 'odd', segments: [{ pvExtent: 16, extents: 2 }] },
    ],
  });
  for (const [name, seed] of [['root', 1], ['fast', 2]] as const) {
    const image = path.join(workDir, `${name}.img`);
    const tree = path.join(workDir, `${name}-tree`);
    execFileSync('mkdir', ['-p', tree]);
    await writeFile(path.join(tree, 'file.bin'), Buffer.alloc(MiB + seed * 4096, seed));
    execFileSync('truncate', ['-s', String(disk.lvs[name]!.size), image]);
    execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', '-d', tree, image]);
    await writeLvImage(disk.path, disk.lvs[name]!, image);
  }
  pristine = new Uint8Array(await readFile(disk.path));
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

describe('the LVM text format', () => {
  it('reads sections, strings with escapes, arrays and comments', () => {
    const top = parseLvmText('vg { # a comment\n id = "a\\"b" n = -12 list = ["x", 3, "y"] empty = [] inner { f = 1.5 } }\0garbage');
    const vg = top.sections.get('vg')!;
    expect(vg.values.get('id')).toBe('a"b');
    expect(vg.values.get('n')).toBe(-12);
    expect(vg.values.get('list')).toEqual(['x', 3, 'y']);
    expect(vg.values.get('empty')).toEqual([]);
    expect(vg.sections.get('inner')!.values.get('f')).toBe(1.5);
  });

  it.each([
    ['an unclosed section', 'vg { a = 1'],
    ['a stray brace', 'vg { a = 1 } }'],
    ['a key defined twice', 'vg { a = 1 a = 2 }'],
    ['an unterminated string', 'vg { a = "x }'],
    ['an unterminated array', 'vg { a = [1, 2 }'],
    ['a huge number', 'vg { a = 123456789012345678901234 }'],
    ['a missing value', 'vg { a = }'],
    ['deep nesting', 'a { '.repeat(10_000)],
  ])('refuses %s with a clear error', (_name, text) => {
    expect(() => parseLvmText(text)).toThrow(InconsistentMetadataError);
  });
});

describe('the LVM2 mapper on a PV made by pvcreate, vgcreate and vgcfgrestore', () => {
  it('maps the label, both metadata areas and each LV by its filesystem; free extents are left out', async () => {
    const bytes = pv();
    const { extents, lvm } = await map(bytes);
    expectWellFormed(extents, bytes.length);
    const peStart = disk.pvs[0]!.peStart;
    expect(lvm!.pv.peStart).toBe(peStart);
    expect(covers(extents, 0, peStart)).toBe(true);
    for (const area of metadataAreas(bytes)) expect(covers(extents, area.offset, area.size)).toBe(true);
    const extent = (n: number) => peStart + n * MiB;
    for (const free of [0, 7, 8, 9, 18, 19, 22, 25]) expect(covers(extents, extent(free), 1), `free extent ${free}`).toBe(false);
    expect(lvNamed(lvm, 'root')).toMatchObject({ filesystem: 'ext4', mode: 'used', size: 10 * MiB });
    expect(lvNamed(lvm, 'fast')).toMatchObject({ filesystem: 'ext4', mode: 'used', size: 4 * MiB });
    expect(lvNamed(lvm, 'odd')).toMatchObject({ mode: 'exact', note: 'no recognised filesystem; imaged exactly' });
    expect(covers(extents, extent(16), 2 * MiB)).toBe(true);
  });

  it('maps exactly the ext4 used blocks of each LV, translated to PV offsets', async () => {
    const bytes = pv();
    const { extents } = await map(bytes);
    for (const name of ['root', 'fast']) {
      const placed = disk.lvs[name]!;
      const image = new Uint8Array(placed.size);
      for (const piece of placed.pieces) image.set(bytes.subarray(piece.diskOffset, piece.diskOffset + piece.length), piece.lvOffset);
      for (const used of await mapExt4UsedBlocks(bytesReader(image))) {
        for (const piece of placed.pieces) {
          const from = Math.max(used.offset, piece.lvOffset);
          const to = Math.min(used.offset + used.length, piece.lvOffset + piece.length);
          if (from < to) expect(covers(extents, piece.diskOffset + from - piece.lvOffset, to - from), `${name} at ${from}`).toBe(true);
        }
      }
      // Not everything: the LV's free blocks are left out.
      const stored = placed.pieces.reduce((n, p) => n + extents.reduce((m, e) => m + Math.max(0, Math.min(e.offset + e.length, p.diskOffset + p.length) - Math.max(e.offset, p.diskOffset)), 0), 0);
      expect(stored).toBeLessThan(placed.size * 0.8);
    }
  });

  it('reads a copy whose text wraps around the end of its area', async () => {
    const bytes = pv();
    const [first] = metadataAreas(bytes);
    const { text } = metadataText(bytes, first!);
    writeMetadataText(bytes, first!, withSeqno(text, 100), first!.size - 300);
    const { lvm } = await map(bytes);
    expect(lvm!.vg.seqno).toBe(100);
  });

  it('outweighs a damaged copy by the good one, and refuses when none is good', async () => {
    const bytes = pv();
    const [first, second] = metadataAreas(bytes);
    const reference = await map(pv());
    const { offset } = metadataText(bytes, first!);
    bytes[first!.offset + offset + 40] ^= 0x04;
    expect(await map(bytes)).toEqual(reference);
    const text = metadataText(bytes, second!);
    bytes[second!.offset + text.offset + 40] ^= 0x04;
    await expect(map(bytes)).rejects.toThrow(/wrong checksum.*; .*wrong checksum/);
  });

  it('takes the copy with the newest seqno', async () => {
    const bytes = pv();
    const [first, second] = metadataAreas(bytes);
    const { text } = metadataText(bytes, second!);
    writeMetadataText(bytes, second!, withSeqno(text.replace(/"pv0", 16\s*\]/, '"pv0", 26]'), 50));
    const { lvm, extents } = await map(bytes);
    expect(lvm!.vg.seqno).toBe(50);
    expect(lvNamed(lvm, 'odd').segments[0]!.areas).toEqual([{ pv: 'pv0', extent: 26 }]);
    expect(covers(extents, disk.pvs[0]!.peStart + 26 * MiB, 2 * MiB)).toBe(true);
    // The older copy of the first area lost: the newer one still counts.
    writeMetadataText(bytes, first!, withSeqno(metadataText(bytes, first!).text, 49));
    expect((await map(bytes)).lvm!.vg.seqno).toBe(50);
  });

  it('images a snapshot origin and its copy-on-write LV exactly', async () => {
    const bytes = pv();
    const [first] = metadataAreas(bytes);
    const sections = lvSection('snap', ['VISIBLE'], 'type = "striped"\nstripe_count = 1\nstripes = ["pv0", 22]', 2) + lvSection('snapshot0', [], 'type = "snapshot"\nchunk_size = 8\norigin = "root"\ncow_store = "snap"', 10);
    writeMetadataText(bytes, first!, withSeqno(withLvSections(metadataText(bytes, first!).text, sections), 60));
    const { lvm, extents } = await map(bytes);
    expect(lvNamed(lvm, 'root')).toMatchObject({ mode: 'exact', note: 'part of LV snapshot0 (snapshot); imaged exactly' });
    expect(lvNamed(lvm, 'snap')).toMatchObject({ mode: 'exact', note: 'part of LV snapshot0 (snapshot); imaged exactly' });
    expect(lvNamed(lvm, 'snapshot0')).toMatchObject({ mode: 'exact' });
    expect(covers(extents, disk.pvs[0]!.peStart + 10 * MiB, 6 * MiB)).toBe(true);
    expect(lvNamed(lvm, 'fast').mode).toBe('used');
  });

  it('images a thin pool\'s data and metadata LVs exactly and says where a thin LV lives', async () => {
    const bytes = pv();
    const [first] = metadataAreas(bytes);
    const sections =
      lvSection('pool', ['VISIBLE'], 'type = "thin-pool"\nmetadata = "pool_tmeta"\npool = "pool_tdata"\ntransaction_id = 0\nchunk_size = 128\ndiscards = "passdown"\nzero_new_blocks = 1', 4) +
      lvSection('pool_tdata', [], 'type = "striped"\nstripe_count = 1\nstripes = ["pv0", 22]', 4) +
      lvSection('pool_tmeta', [], 'type = "striped"\nstripe_count = 1\nstripes = ["pv0", 26]', 1) +
      lvSection('thin1', ['VISIBLE'], 'type = "thin"\nthin_pool = "pool"\ntransaction_id = 0\ndevice_id = 1', 100);
    writeMetadataText(bytes, first!, withSeqno(withLvSections(metadataText(bytes, first!).text, sections), 61));
    const { lvm, extents } = await map(bytes);
    expect(lvNamed(lvm, 'pool_tdata')).toMatchObject({ mode: 'exact', note: 'part of LV pool (thin-pool); imaged exactly' });
    expect(lvNamed(lvm, 'pool_tmeta').mode).toBe('exact');
    expect(lvNamed(lvm, 'thin1')).toMatchObject({ mode: 'exact', note: expect.stringMatching(/^a thin LV on pool: /) });
    expect(covers(extents, disk.pvs[0]!.peStart + 22 * MiB, 5 * MiB)).toBe(true);
  });

  it('refuses a segment that places data on the PV in a way it does not lay out (pvmove)', async () => {
    const bytes = pv();
    const [first] = metadataAreas(bytes);
    const sections = lvSection('pvmove0', ['LOCKED', 'PVMOVE'], 'type = "mirror"\nmirror_count = 1\nmirrors = ["pv0", 22]', 2);
    writeMetadataText(bytes, first!, withSeqno(withLvSections(metadataText(bytes, first!).text, sections), 62));
    await expect(map(bytes)).rejects.toThrow(/places data on pv0 directly/);
  });

  it('refuses extents given to two LVs, and extents past the PV', async () => {
    for (const [edit, message] of [
      [(t: string) => t.replace(/"pv0", 16\s*\]/, '"pv0", 11]'), /belongs to both/],
      [(t: string) => t.replace(/"pv0", 16\s*\]/, '"pv0", 1000]'), /which has \d+/],
    ] as const) {
      const bytes = pv();
      for (const area of metadataAreas(bytes)) writeMetadataText(bytes, area, withSeqno(edit(metadataText(bytes, area).text), 70));
      await expect(map(bytes)).rejects.toThrow(message);
    }
  });

  it('keeps mapping the other LVs when one LV\'s filesystem is damaged', async () => {
    const bytes = pv();
    const root = disk.lvs['root']!.pieces[0]!;
    bytes.fill(0, root.diskOffset + 1024, root.diskOffset + 2048); // the ext4 superblock
    const { lvm } = await map(bytes);
    expect(lvNamed(lvm, 'root')).toMatchObject({ mode: 'exact', note: 'no recognised filesystem; imaged exactly' });
    expect(lvNamed(lvm, 'fast').mode).toBe('used');
  });

  it('refuses a damaged label, so planExtents images the PV exactly with the reason', async () => {
    const bytes = pv();
    bytes[512 + 72 + 1] ^= 0x10; // the data area's offset (pe_start), 4 KiB further
    const plan = await planExtents('used', 'lvm2', bytesReader(bytes), USED_BLOCK_MAPPERS);
    expect(plan).toMatchObject({ mode: 'exact', note: expect.stringMatching(/^LVM: the label's checksum is wrong/) });
    fixLabel(bytes);
    await expect(map(bytes)).rejects.toThrow(/differs from the data area in the PV header/);
  });
});

/** An LV section in LVM text with one segment. */
function lvSection(name: string, status: string[], segment: string, extents: number): string {
  const flags = ['READ', 'WRITE', ...status].map((s) => `"${s}"`).join(', ');
  return `${name} {\nid = "abcdef-abcd-abcd-abcd-abcd-abcd-abcdef"\nstatus = [${flags}]\nsegment_count = 1\nsegment1 {\nstart_extent = 0\nextent_count = ${extents}\n${segment}\n}\n}\n`;
}
