import { describe, expect, it } from 'vitest';
import { useMemoryAdvice } from './aligned-memory.js';
import { SlotPool } from './worker-pool.js';

const MiB = 1024 * 1024;

describe('SlotPool', () => {
  it('gives back the pages past keepResident of a slot used past them (they read as zeros), the bytes before kept', async () => {
    await useMemoryAdvice();
    const pool = new SlotPool(1, 4 * MiB, MiB);
    const slot = await pool.acquire();
    new Uint8Array(slot).fill(7);
    pool.release(slot, 3 * MiB);
    const again = new Uint8Array(await pool.acquire());
    expect(again.buffer).toBe(slot);
    expect(again.subarray(0, MiB).every((b) => b === 7)).toBe(true);
    expect(again.subarray(MiB).every((b) => b === 0)).toBe(true);
  });

  it('leaves a slot as it is when it was used within keepResident, or has no such limit', async () => {
    await useMemoryAdvice();
    for (const pool of [new SlotPool(1, 4 * MiB, MiB), new SlotPool(1, 4 * MiB)]) {
      const slot = await pool.acquire();
      new Uint8Array(slot).fill(7);
      pool.release(slot, MiB);
      expect(new Uint8Array(await pool.acquire()).every((b) => b === 7)).toBe(true);
    }
  });

  it('hands a released slot to the oldest waiter first', async () => {
    const pool = new SlotPool(1, 64 * 1024);
    const slot = await pool.acquire();
    const order: number[] = [];
    const waiting = [pool.acquire().then(() => order.push(1)), pool.acquire().then(() => order.push(2))];
    pool.release(slot);
    await waiting[0];
    pool.release(slot);
    await Promise.all(waiting);
    expect(order).toEqual([1, 2]);
  });
});
