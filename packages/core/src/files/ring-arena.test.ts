import { describe, expect, it } from 'vitest';
import { RingArena, type ArenaPiece } from './ring-arena.js';

/** Where a piece sits in its arena's memory. */
const startOf = (piece: ArenaPiece) => piece.bytes.byteOffset;

/** Whether the promise has settled by the time queued callbacks have run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(() => (done = true));
  await new Promise((resolve) => setImmediate(resolve));
  return done;
}

describe('RingArena', () => {
  it('hands out contiguous pieces of one shared memory, in ring order', async () => {
    const arena = new RingArena(100);
    const a = await arena.allocate(30);
    const b = await arena.allocate(50);
    expect(a.bytes.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(b.bytes.buffer).toBe(a.bytes.buffer);
    expect([startOf(a), a.bytes.length, startOf(b), b.bytes.length]).toEqual([0, 30, 30, 50]);
  });

  it('wraps to the start once the oldest pieces are released, and never overlaps a live piece', async () => {
    const arena = new RingArena(100);
    const a = await arena.allocate(40);
    const b = await arena.allocate(40);
    const c = arena.allocate(30); // 20 bytes left at the end, and the start is taken
    expect(await settled(c)).toBe(false);
    a.release();
    expect(startOf(await c)).toBe(0);
    const d = arena.allocate(15); // between c (0-30) and b (40-80) there are 10 bytes; 20 at the end are not after the newest
    expect(await settled(d)).toBe(false);
    b.release();
    expect(startOf(await d)).toBe(30);
  });

  it('takes back the space of pieces released out of order only when the older ones go', async () => {
    const arena = new RingArena(90);
    const pieces = await Promise.all([arena.allocate(30), arena.allocate(30), arena.allocate(30)]);
    pieces[1]!.release();
    pieces[2]!.release();
    const next = arena.allocate(10);
    expect(await settled(next)).toBe(false);
    pieces[0]!.release();
    expect(startOf(await next)).toBe(0);
  });

  it('serves waiting allocations first come first served, a large one not passed by small ones', async () => {
    const arena = new RingArena(100);
    const a = await arena.allocate(60);
    const order: string[] = [];
    const large = arena.allocate(70).then((p) => (order.push('large'), p));
    const small = arena.allocate(10).then((p) => (order.push('small'), p));
    expect(await settled(small)).toBe(false); // 40 bytes are free, but the large one asked first
    a.release();
    await Promise.all([large, small]);
    expect(order).toEqual(['large', 'small']);
  });

  it('releases a piece once however often it is told, and an empty piece takes no room', async () => {
    const arena = new RingArena(50);
    const a = await arena.allocate(50);
    const empty = await arena.allocate(0);
    expect(empty.bytes.length).toBe(0);
    empty.release();
    a.release();
    a.release();
    const b = await arena.allocate(50);
    expect(startOf(b)).toBe(0);
    expect(await settled(arena.allocate(1))).toBe(false);
  });

  it('refuses a piece larger than the arena', () => {
    expect(() => new RingArena(10).allocate(11)).toThrow(RangeError);
  });
});
