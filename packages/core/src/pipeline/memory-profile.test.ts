import { describe, expect, it } from 'vitest';
import { UsageError } from '../errors.js';
import { memoryProfile } from './memory-profile.js';

describe('memoryProfile', () => {
  it('is low unless CAIRN_MEMORY says high, and high keeps more of everything in flight', () => {
    const low = memoryProfile({}, 2);
    const high = memoryProfile({ CAIRN_MEMORY: ' high ' }, 2);
    expect(memoryProfile({ CAIRN_MEMORY: '' }, 2).name).toBe('low');
    expect([low.name, high.name]).toEqual(['low', 'high']);
    expect(high.backupSlots).toBeGreaterThan(low.backupSlots);
    expect(high.restoreSlots).toBeGreaterThan(low.restoreSlots);
    expect(high.packsChecked).toBeGreaterThan(low.packsChecked);
    // A local disk (one put at a time) gets one upload in flight when low, three when high; a
    // remote store two when low (each holds a pack), its own number (at least three) when high.
    expect([low.uploadsInFlight(1), high.uploadsInFlight(1), low.uploadsInFlight(3), high.uploadsInFlight(5)]).toEqual([1, 3, 2, 5]);
    // Low keeps V8's old generation within a quarter of what the last full collection kept and
    // its young generation at 8 MiB; high leaves both to V8.
    expect([low.heapGrowthPercent, high.heapGrowthPercent, low.youngGenerationMiB, high.youngGenerationMiB]).toEqual([25, undefined, 8, undefined]);
    // Low halves a files restore's plaintext ring (its malloc arena cap: malloc-arenas.test.ts).
    expect([low.fileRestoreRing, high.fileRestoreRing]).toEqual([16 * 1024 * 1024, 32 * 1024 * 1024]);
  });

  it('refuses any other value as a usage error naming the two', () => {
    expect(() => memoryProfile({ CAIRN_MEMORY: 'huge' }, 2)).toThrow(UsageError);
    expect(() => memoryProfile({ CAIRN_MEMORY: 'huge' }, 2)).toThrow(/CAIRN_MEMORY must be "low" or "high", not "huge"/);
  });
});
