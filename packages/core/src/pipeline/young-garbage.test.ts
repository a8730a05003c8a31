import { PerformanceObserver, constants, type PerformanceEntry } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { YoungGarbage } from './young-garbage.js';

/** Minor collections this thread ran while `during` ran, as V8 reported them. */
async function minorCollectionsDuring(during: () => void): Promise<number> {
  const seen: PerformanceEntry[] = [];
  const observer = new PerformanceObserver((list) => seen.push(...list.getEntries()));
  observer.observe({ entryTypes: ['gc'] });
  try {
    during();
    // GC entries are delivered asynchronously.
    await new Promise((resolve) => setTimeout(resolve, 50));
    return seen.filter((entry) => (entry.detail as { kind: number }).kind === constants.NODE_PERFORMANCE_GC_MINOR).length;
  } finally {
    observer.disconnect();
  }
}

describe('YoungGarbage', () => {
  it('runs a minor collection each time `every` bytes were dropped', async () => {
    const garbage = new YoungGarbage(1000);
    // Ten times the threshold in pieces: ten collections (V8 may add its own).
    const collections = await minorCollectionsDuring(() => {
      for (let i = 0; i < 40; i++) garbage.dropped(250);
    });
    expect(collections).toBeGreaterThanOrEqual(10);
  });

  it('collects nothing for drops below the threshold', async () => {
    const garbage = new YoungGarbage(1024 * 1024 * 1024);
    const collections = await minorCollectionsDuring(() => {
      for (let i = 0; i < 1000; i++) garbage.dropped(1000);
    });
    // Not the thousand a collection per drop would give (V8 may run a few of its own).
    expect(collections).toBeLessThan(50);
  });
});
