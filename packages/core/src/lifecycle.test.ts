import { describe, expect, it } from 'vitest';
import { DisposableStore, toDisposable } from './lifecycle.js';

describe('DisposableStore', () => {
  it('disposes in reverse order and keeps going past a failing item', async () => {
    const order: string[] = [];
    const store = new DisposableStore();
    store.add(toDisposable(() => void order.push('first')));
    store.add(
      toDisposable(() => {
        order.push('failing');
        throw new Error('boom');
      }),
    );
    store.add(toDisposable(async () => void order.push('last')));
    await expect(store.dispose()).rejects.toThrow('boom');
    expect(order).toEqual(['last', 'failing', 'first']);
  });

  it('disposes an item added after disposal at once, and each item once', async () => {
    const store = new DisposableStore();
    await store.dispose();
    let count = 0;
    const item = toDisposable(() => void count++);
    store.add(item);
    await new Promise((resolve) => setImmediate(resolve));
    await item.dispose();
    expect(count).toBe(1);
  });
});
