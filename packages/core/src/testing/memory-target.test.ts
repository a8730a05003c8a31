import { describe, expect, it } from 'vitest';
import { describeTargetConformance, FaultyTarget, InjectedFaultError, MemoryTarget } from './index.js';

describeTargetConformance('MemoryTarget', async () => ({ target: new MemoryTarget() }));

describe('MemoryTarget', () => {
  it('stores a copy, so a caller reusing its buffer does not change the object', async () => {
    const target = new MemoryTarget();
    const buffer = Buffer.from('abc');
    await target.put('config', buffer);
    buffer.write('xyz');
    (await target.get('config')).write('123');
    expect((await target.get('config')).toString()).toBe('abc');
  });

  it('rejects use after dispose', async () => {
    const target = new MemoryTarget();
    target.dispose();
    await expect(target.put('config', Buffer.from('x'))).rejects.toThrow(/after dispose/);
  });
});

describeTargetConformance('FaultyTarget without faults', async () => ({ target: new FaultyTarget(new MemoryTarget()) }));

describe('FaultyTarget', () => {
  it('fails the next calls of one operation, then recovers', async () => {
    const target = new FaultyTarget(new MemoryTarget());
    target.failNext('put', undefined, 2);
    await expect(target.put('a', Buffer.from('1'))).rejects.toBeInstanceOf(InjectedFaultError);
    await expect(target.put('a', Buffer.from('1'))).rejects.toThrow("Injected put failure on 'a'");
    await target.put('a', Buffer.from('1'));
    expect((await target.get('a')).toString()).toBe('1');
    expect(target.calls).toMatchObject({ put: 3, get: 1 });
  });

  it('does not write anything when an injected put fails', async () => {
    const inner = new MemoryTarget();
    const target = new FaultyTarget(inner);
    target.failNext('put');
    await expect(target.put('a', Buffer.from('1'))).rejects.toThrow();
    await expect(inner.stat('a')).rejects.toSatisfy((err) => inner.isNotFound(err));
  });

  it('throws the given error, or builds it from the key', async () => {
    const target = new FaultyTarget(new MemoryTarget());
    const disconnected = new Error('connection reset');
    target.failNext('stat', disconnected);
    target.failNext('remove', (key: string) => new Error(`no space for ${key}`));
    await expect(target.stat('a')).rejects.toBe(disconnected);
    await expect(target.remove('k')).rejects.toThrow('no space for k');
  });

  it('fails lists when iterated', async () => {
    const target = new FaultyTarget(new MemoryTarget());
    target.failNext('list');
    const listing = target.list('');
    await expect(listing[Symbol.asyncIterator]().next()).rejects.toBeInstanceOf(InjectedFaultError);
  });

  it('fails every put after some succeed, until healed', async () => {
    const target = new FaultyTarget(new MemoryTarget());
    target.failAfter('put', 2);
    await target.put('a', Buffer.from('1'));
    await target.put('b', Buffer.from('2'));
    await expect(target.put('c', Buffer.from('3'))).rejects.toThrow();
    await expect(target.put('d', Buffer.from('4'))).rejects.toThrow();
    target.heal();
    await target.put('e', Buffer.from('5'));
    expect(target.calls.put).toBe(5);
  });

  it('lets a one-off failure fire while a failAfter rule is still counting', async () => {
    const target = new FaultyTarget(new MemoryTarget());
    target.failAfter('put', 1);
    target.failNext('put');
    await expect(target.put('a', Buffer.from('1'))).rejects.toBeInstanceOf(InjectedFaultError);
    await target.put('b', Buffer.from('2'));
    await expect(target.put('c', Buffer.from('3'))).rejects.toBeInstanceOf(InjectedFaultError);
  });

  it('corrupts what get returns but not what is stored', async () => {
    const target = new FaultyTarget(new MemoryTarget());
    const data = Buffer.from('0123456789');
    await target.put('data/ab/pack', data);
    target.corruptNextGets();
    const damaged = await target.get('data/ab/pack');
    expect(damaged.length).toBe(data.length);
    expect(damaged.equals(data)).toBe(false);
    expect((await target.get('data/ab/pack')).equals(data)).toBe(true);
  });

  it('delegates isNotFound and location to the wrapped target', async () => {
    const inner = new MemoryTarget('memory:test');
    const target = new FaultyTarget(inner);
    expect(target.location).toBe('memory:test');
    const error = await target.get('missing').catch((err: unknown) => err);
    expect(target.isNotFound(error)).toBe(true);
  });
});
