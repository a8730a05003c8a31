import { describe, expect, it } from 'vitest';
import { TripBatcher } from './trips.js';

describe('TripBatcher', () => {
  it('sends the calls of one turn together, in trips of at most the given size, answering each call with its own outcome', async () => {
    const trips: number[][] = [];
    const batcher = new TripBatcher<number, number>(4, async (inputs) => {
      trips.push(inputs);
      return inputs.map((n) => (n === 5 ? new Error(`no ${n}`) : n * 10));
    });
    const calls = Array.from({ length: 10 }, (_, n) => batcher.call(n));
    const outcomes = await Promise.allSettled(calls);
    expect(trips).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6, 7],
      [8, 9],
    ]);
    expect(outcomes[5]).toMatchObject({ status: 'rejected', reason: { message: 'no 5' } });
    expect(outcomes.filter((o) => o.status === 'fulfilled').map((o) => (o as PromiseFulfilledResult<number>).value)).toEqual([0, 10, 20, 30, 40, 60, 70, 80, 90]);
  });

  it('a call made after a trip left goes in a later one; a failed or throwing send rejects every call of its trip', async () => {
    const trips: string[][] = [];
    let fail: 'reject' | 'throw' | undefined;
    const batcher = new TripBatcher<string, string>(8, (inputs) => {
      trips.push(inputs);
      if (fail === 'throw') throw new Error('thrown');
      return fail === 'reject' ? Promise.reject(new Error('rejected')) : Promise.resolve(inputs.map((s) => s.toUpperCase()));
    });
    expect(await batcher.call('a')).toBe('A');
    expect(await Promise.all([batcher.call('b'), batcher.call('c')])).toEqual(['B', 'C']);
    fail = 'reject';
    await expect(Promise.all([batcher.call('d'), batcher.call('e')])).rejects.toThrow('rejected');
    fail = 'throw';
    const thrown = await Promise.allSettled([batcher.call('f'), batcher.call('g')]);
    expect(thrown.map((o) => o.status === 'rejected' && (o.reason as Error).message)).toEqual(['thrown', 'thrown']);
    expect(trips).toEqual([['a'], ['b', 'c'], ['d', 'e'], ['f', 'g']]);
  });
});
