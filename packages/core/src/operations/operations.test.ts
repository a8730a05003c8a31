import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContainerModule } from '../vendor.js';
import { createCore, type Core } from '../create-core.js';
import { Clock, SourceRegistry, TargetRegistry, type Logger } from '../services.js';
import { EngineHooks, type JobRun, type RunOutcome } from '../hooks.js';
import { DamageError, HookTapError, SnapshotAbortedError } from '../errors.js';
import { MemoryTarget, sharedView } from '../testing/memory-target.js';
import { memorySource } from '../testing/memory-source.js';
import type { LoadedJob } from '../job/job-loader.js';
import { InitOperation } from './init.js';
import { BackupOperation } from './backup.js';
import { RestoreOperation } from './restore.js';
import { SnapshotsOperation } from './snapshots.js';

/*
 * The operations through the core's container, with every hook tapped: what fires, in which
 * order, with what, and what a tap's error does. A memory target and a memory source stand
 * in for the plugins; the pipeline, repository and worker threads are the real ones.
 */

const IMAGE = Buffer.concat([randomBytes(256 * 1024), Buffer.alloc(128 * 1024), randomBytes(100_000)]);


describe('operations and their hooks', () => {
  let dir: string;
  let core: Core;
  let target: MemoryTarget;
  let hooks: Readonly<EngineHooks>;
  let logged: string[];
  const clock = { time: new Date('2026-12-01T02:00:00.000Z'), now: () => clock.time };

  const job: LoadedJob = {
    info: { name: 'ops', file: '/jobs/ops.json', job: {} },
    config: { name: 'ops', source: { type: 'memory' }, target: { type: 'memory' }, password: { env: 'PW' }, chunkSize: 64 * 1024 },
    baseDir: '/jobs',
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-ops-'));
    await writeFile(join(dir, 'plugins.json'), JSON.stringify({ plugins: [] }));
    logged = [];
    const logger: Logger = { debug() {}, info() {}, warn: (m) => logged.push(`warn ${m}`), error: (m) => logged.push(`error ${m}`) };
    const testClock = new ContainerModule(({ rebind }) => {
      rebind(Clock).toConstantValue(clock);
    });
    core = await createCore({ pluginsFile: join(dir, 'plugins.json'), logger, env: { PW: 'pw' }, cwd: dir, modules: [testClock] });
    target = new MemoryTarget();
    // Each operation disposes the target it opened; the repository must outlive them.
    core.get<TargetRegistry>(TargetRegistry).register('memory', { create: async () => sharedView(target) });
    core.get<SourceRegistry>(SourceRegistry).register('memory', { open: async () => memorySource(IMAGE) });
    hooks = core.get<Readonly<EngineHooks>>(EngineHooks);
    await core.get(InitOperation).run(job);
  });
  afterEach(async () => {
    await core.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  /** Taps every engine hook and every run hook; returns what fired, in order. */
  function record(): string[] {
    const events: string[] = [];
    hooks.beforeRun.tap('Test', (run: JobRun) => void events.push(`beforeRun ${run.operation}`));
    hooks.failed.tap('Test', (run: JobRun, error: unknown) => void events.push(`failed ${run.operation}: ${(error as Error).message}`));
    hooks.afterRun.tap('Test', (run: JobRun, outcome: RunOutcome) => void events.push(`afterRun ${run.operation} ${outcome.ok ? 'ok' : 'failed'}`));
    hooks.backup.tap('Test', (run) => {
      events.push('backup');
      run.hooks.sourceOpened.tap('Test', (source) => void events.push(`sourceOpened ${source.layout.size}`));
      run.hooks.beforeSnapshot.tap('Test', (manifest) => void events.push(`beforeSnapshot ${manifest.time} ${manifest.chunkCount}`));
      run.hooks.snapshotSaved.tap('Test', (saved) => void events.push(`snapshotSaved ${saved.id.length} ${saved.manifest.size}`));
    });
    hooks.restore.tap('Test', (run) => {
      events.push('restore');
      run.hooks.beforeWrite.tap('Test', (write) => void events.push(`beforeWrite ${write.kind} ${write.snapshot.length}`));
      run.hooks.done.tap('Test', (done) => void events.push(`done ${done.bytesWritten} ${done.partial}`));
    });
    return events;
  }

  it('fires every backup and restore hook once, in order, with the run facts', async () => {
    const events = record();
    const { result, tapFailures } = await core.get(BackupOperation).run(job);
    expect(tapFailures).toEqual([]);
    // The snapshot's time is the core's clock, which a test (or the scheduler) may replace.
    expect(result.manifest.time).toBe('2026-12-01T02:00:00.000Z');
    const chunks = Math.ceil(IMAGE.length / (64 * 1024));
    expect(events).toEqual(['beforeRun backup', 'backup', `sourceOpened ${IMAGE.length}`, `beforeSnapshot 2026-12-01T02:00:00.000Z ${chunks}`, `snapshotSaved 64 ${IMAGE.length}`, 'afterRun backup ok']);

    events.length = 0;
    const to = join(dir, 'restored.img');
    const restored = await core.get(RestoreOperation).run(job, 'latest', to);
    expect(restored.result.imageDigest).toEqual(result.manifest.imageDigest);
    expect((await readFile(to)).equals(IMAGE)).toBe(true);
    // A new file: only data chunks are written, all-zero ones stay holes.
    let dataBytes = 0;
    for (let at = 0; at < IMAGE.length; at += 64 * 1024) {
      const chunk = IMAGE.subarray(at, at + 64 * 1024);
      if (chunk.some((byte) => byte !== 0)) dataBytes += chunk.length;
    }
    expect(restored.result.bytesWritten).toBe(dataBytes);
    expect(events).toEqual(['beforeRun restore', 'restore', 'beforeWrite file 64', `done ${dataBytes} false`, 'afterRun restore ok']);
  });

  it('lets a beforeSnapshot tap inspect the manifest and stop the snapshot with a reason', async () => {
    const events = record();
    hooks.backup.tap('Guard', (run) => {
      run.hooks.beforeSnapshot.tapPromise('Guard', async (manifest) => (manifest.stats.newChunks > 0 ? { abort: `${manifest.stats.newChunks} new chunks need approval` } : undefined));
    });
    const error = await core.get(BackupOperation).run(job).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SnapshotAbortedError);
    expect((error as Error).message).toMatch(/^The snapshot was not saved: Guard stopped it: \d+ new chunks need approval$/);
    expect(await core.get(SnapshotsOperation).list(job)).toEqual([]);
    expect(events.at(-2)).toMatch(/^failed backup: The snapshot was not saved/);
    expect(events.at(-1)).toBe('afterRun backup failed');
    // What the stopped run stored is reused by the next one.
    const packs = await target.list('data/')[Symbol.asyncIterator]().next();
    expect(packs.done).toBe(false);
  });

  it('aborts on a failing tap of a before hook, naming it, and still runs failed and afterRun', async () => {
    const events = record();
    hooks.backup.tap('Picky', (run) => {
      run.hooks.sourceOpened.tap('Picky', () => {
        throw new Error('this source is not allowed');
      });
    });
    const error = await core.get(BackupOperation).run(job).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HookTapError);
    expect((error as HookTapError).message).toBe('Picky (sourceOpened): this source is not allowed');
    expect((error as HookTapError).exitCode).toBe(1);
    expect(events).toEqual(['beforeRun backup', 'backup', `sourceOpened ${IMAGE.length}`, 'failed backup: Picky (sourceOpened): this source is not allowed', 'afterRun backup failed']);
    expect(await target.list('snapshots/')[Symbol.asyncIterator]().next()).toEqual({ done: true, value: undefined });
  });

  it('a failing beforeRun tap stops the run before it touches anything', async () => {
    hooks.beforeRun.tapPromise('Freeze', async () => {
      throw new Error('fsfreeze: not permitted');
    });
    const events = record();
    const error = await core.get(RestoreOperation).run(job, 'latest', join(dir, 'never.img')).catch((e: unknown) => e);
    expect((error as Error).message).toBe('Freeze (beforeRun): fsfreeze: not permitted');
    // The recording taps came after Freeze: beforeRun stopped at it, failed and afterRun ran all theirs.
    expect(events).toEqual(['failed restore: Freeze (beforeRun): fsfreeze: not permitted', 'afterRun restore failed']);
    expect(await readdir(dir)).toEqual(['plugins.json']);
  });

  it('a beforeWrite tap that refuses stops the restore before anything is written, and leaves no file', async () => {
    await core.get(BackupOperation).run(job);
    hooks.restore.tap('Guard', (run) => {
      run.hooks.beforeWrite.tap('Guard', (write) => {
        if (write.kind === 'file') throw new Error('restores go to devices only here');
      });
    });
    const error = await core.get(RestoreOperation).run(job, 'latest', join(dir, 'refused.img')).catch((e: unknown) => e);
    expect((error as Error).message).toBe('Guard (beforeWrite): restores go to devices only here');
    // Not even the temporary file the image would have been written to.
    expect(await readdir(dir)).toEqual(['plugins.json']);
  });

  it('runs every tap of an after hook when one throws, logs it by name, and reports it with the result', async () => {
    const events = record();
    hooks.backup.tap('Notifier', (run) => {
      run.hooks.snapshotSaved.tapPromise({ name: 'Notifier', stage: -1 }, async () => {
        throw new Error('SMTP server unreachable');
      });
    });
    hooks.afterRun.tap('Cleanup', () => {
      throw new Error('cleanup failed');
    });
    const { result, tapFailures } = await core.get(BackupOperation).run(job);
    expect(result.snapshot).toMatch(/^[0-9a-f]{64}$/);
    expect(tapFailures.map((f) => [f.hook, f.tap, (f.error as Error).message])).toEqual([
      ['snapshotSaved', 'Notifier', 'SMTP server unreachable'],
      ['afterRun', 'Cleanup', 'cleanup failed'],
    ]);
    expect(logged).toEqual(['error Notifier (snapshotSaved): SMTP server unreachable', 'error Cleanup (afterRun): cleanup failed']);
    // The recording taps of both hooks ran in spite of the failures.
    expect(events.slice(-2)).toEqual([`snapshotSaved 64 ${IMAGE.length}`, 'afterRun backup ok']);
  });

  it('a failed restore fires failed and afterRun, and leaves no file', async () => {
    await core.get(BackupOperation).run(job);
    const events = record();
    for await (const object of target.list('data/')) {
      const bytes = await target.get(object.key);
      bytes[40]! ^= 1;
      await target.put(object.key, bytes);
    }
    const error = await core.get(RestoreOperation).run(job, 'latest', join(dir, 'damaged.img')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DamageError);
    expect(events[0]).toBe('beforeRun restore');
    expect(events.slice(-2)).toEqual([`failed restore: ${(error as Error).message}`, 'afterRun restore failed']);
    expect(events).not.toContain(expect.stringMatching(/^done/));
    expect(await readdir(dir)).toEqual(['plugins.json']);
  });

  /** The target's keys under `prefix`. */
  async function keysUnder(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    for await (const object of target.list(prefix)) keys.push(object.key);
    return keys.sort();
  }

  /** The job with another source and target type (registered by the test). */
  const jobWith = (source: string, target: string): LoadedJob => ({ ...job, config: { ...job.config, source: { type: source }, target: { type: target } } });

  /** Registers target type `held-listing`: the target, whose listing of packs first waits for `until`. */
  function holdPackListing(until: Promise<unknown>): void {
    core.get<TargetRegistry>(TargetRegistry).register('held-listing', {
      create: async () => {
        const view = sharedView(target);
        return {
          ...view,
          async *list(prefix: string) {
            if (prefix === 'data/') await until;
            yield* target.list(prefix);
          },
        };
      },
    });
  }

  /** Registers source type `watched`: IMAGE, calling `readToTheEnd` once its last byte is read. */
  function watchSource(readToTheEnd: () => void): void {
    core.get<SourceRegistry>(SourceRegistry).register('watched', {
      open: async () => {
        const source = memorySource(IMAGE);
        return {
          ...source,
          async read(into, offset, length) {
            await source.read(into, offset, length);
            if (offset + length === IMAGE.length) readToTheEnd();
          },
        };
      },
    });
  }

  it('reads and hashes what the repository has while it lists the packs interrupted backups left', async () => {
    await core.get(BackupOperation).run(job);
    const packs = await keysUnder('data/');
    let sourceRead!: () => void;
    const readToTheEnd = new Promise<string>((resolve) => (sourceRead = () => resolve('source read first')));
    watchSource(sourceRead);
    const listed = Promise.race([readToTheEnd, new Promise<string>((resolve) => setTimeout(() => resolve('listing first'), 5000))]);
    holdPackListing(listed);
    const { result } = await core.get(BackupOperation).run(jobWith('watched', 'held-listing'));
    expect(await listed).toBe('source read first');
    expect(result!.manifest.stats).toMatchObject({ newChunks: 0 });
    expect(await keysUnder('data/')).toEqual(packs);
    expect(await keysUnder('snapshots/')).toHaveLength(2);
  });

  it('adopts the packs an interrupted backup left though their listing ends after the reading began, and stores none of their chunks again', async () => {
    await core.get(BackupOperation).run(job);
    const packs = await keysUnder('data/');
    // What a backup killed before its index and snapshot were written leaves: packs no index names.
    for (const key of [...(await keysUnder('index/')), ...(await keysUnder('snapshots/'))]) await target.remove(key);
    let sourceRead!: () => void;
    const readToTheEnd = new Promise<void>((resolve) => (sourceRead = resolve));
    watchSource(sourceRead);
    holdPackListing(new Promise((resolve) => setTimeout(resolve, 300)));
    const { result } = await core.get(BackupOperation).run(jobWith('watched', 'held-listing'));
    await readToTheEnd;
    expect(result!.manifest.stats).toMatchObject({ newChunks: 0 });
    expect(await keysUnder('data/')).toEqual(packs);
    expect(await keysUnder('snapshots/')).toHaveLength(1);
    expect(logged).toEqual([]);
    const restored = join(dir, 'restored.img');
    await core.get(RestoreOperation).run(job, 'latest', restored);
    expect((await readFile(restored)).equals(IMAGE)).toBe(true);
  });

  it('fails without storing anything or saving a snapshot when the packs cannot be listed', async () => {
    const packs = await keysUnder('data/');
    const failing = Promise.reject(Object.assign(new Error('listing data/ failed: connection reset'), { code: 'ECONNRESET' }));
    failing.catch(() => undefined);
    holdPackListing(failing);
    const error = await core.get(BackupOperation).run(jobWith('memory', 'held-listing')).catch((e: unknown) => e);
    expect((error as Error).message).toContain('connection reset');
    expect(await keysUnder('data/')).toEqual(packs);
    expect(await keysUnder('snapshots/')).toEqual([]);
  });
});
