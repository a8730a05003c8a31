import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, test } from 'vitest';
import { SerialQueues } from './serial-queues.js';

describe('SerialQueues', () => {
  test('work under one key runs one at a time, in order; other keys run beside it', async () => {
    const queues = new SerialQueues();
    const events: string[] = [];
    const work = (name: string, ms: number) => async () => {
      events.push(`start ${name}`);
      await sleep(ms);
      events.push(`end ${name}`);
    };
    await Promise.all([queues.run('repo', work('a', 30)), queues.run('repo', work('b', 5)), queues.run('other', work('c', 5))]);
    expect(events.indexOf('start b')).toBeGreaterThan(events.indexOf('end a'));
    expect(events.indexOf('start c')).toBeLessThan(events.indexOf('end a'));
  });

  test('a failing item rejects its own promise and does not stop the next', async () => {
    const queues = new SerialQueues();
    const failed = queues.run('repo', async () => {
      throw new Error('boom');
    });
    let ran = false;
    const next = queues.run('repo', async () => {
      ran = true;
    });
    await expect(failed).rejects.toThrow('boom');
    await next;
    expect(ran).toBe(true);
  });
});
