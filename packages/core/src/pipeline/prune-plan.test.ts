import { describe, expect, it } from 'vitest';
import type { PackedBlob } from '../repository/format.js';
import { planPrune } from './prune-plan.js';
import type { PackUsage } from './prune-usage.js';

const MiB = 1024 * 1024;
const blob = (length: number): PackedBlob => ({ type: 0, id: Buffer.alloc(32), offset: 0, length, rawLength: length });
/** A pack of `size` bytes whose needed blobs take `usedBytes`, its other blobs all but a 1 KiB header. */
const pack = (id: string, size: number, usedBytes: number, indexed = true): PackUsage => ({
  pack: { id, size },
  used: usedBytes ? [blob(usedBytes)] : [],
  usedBytes,
  unusedBytes: Math.max(0, size - 1024 - usedBytes),
  indexed,
});

describe('planPrune', () => {
  const policy = { repackThreshold: 0.5, maxRepackBytes: Infinity };

  it('deletes unused and orphaned packs, repacks those at least half unused, keeps the rest', () => {
    const plan = planPrune([pack('full', 16 * MiB, 16 * MiB), pack('empty', 16 * MiB, 0), pack('orphan', 16 * MiB, 0, false), pack('half', 16 * MiB, 8 * MiB - 1024), pack('most', 16 * MiB, 9 * MiB)], new Set(), policy);
    expect(plan.unused.map((p) => p.id)).toEqual(['empty']);
    expect(plan.orphans.map((p) => p.id)).toEqual(['orphan']);
    expect(plan.repack.map((p) => p.pack.id)).toEqual(['half']);
    expect(plan).toMatchObject({ kept: 2, repackBytes: 8 * MiB - 1024 });
  });

  it('leaves packs an earlier prune marked to the sweep', () => {
    const plan = planPrune([pack('marked', 16 * MiB, 0), pack('orphan', 1 * MiB, 0, false)], new Set(['marked', 'orphan']), policy);
    expect(plan).toMatchObject({ unused: [], orphans: [], repack: [], kept: 0 });
  });

  it('repacks the emptiest packs first, within --max-repack-size', () => {
    const usage = [pack('a', 16 * MiB, 6 * MiB), pack('b', 16 * MiB, 1 * MiB), pack('c', 16 * MiB, 4 * MiB)];
    const plan = planPrune(usage, new Set(), { repackThreshold: 0.5, maxRepackBytes: 5 * MiB });
    expect(plan.repack.map((p) => p.pack.id)).toEqual(['b', 'c']);
    expect(plan).toMatchObject({ kept: 1, repackBytes: 5 * MiB });
  });

  it('with a threshold of 0 repacks every pack holding an unneeded blob (never one whose only extra is its header); of 1 none', () => {
    const usage = [pack('a', 16 * MiB, 15 * MiB), pack('b', 16 * MiB, 1), pack('full', 16 * MiB, 16 * MiB - 1024)];
    expect(planPrune(usage, new Set(), { repackThreshold: 0, maxRepackBytes: Infinity }).repack.map((p) => p.pack.id)).toEqual(['b', 'a']);
    expect(planPrune(usage, new Set(), { repackThreshold: 1, maxRepackBytes: Infinity }).repack).toHaveLength(0);
  });
});
