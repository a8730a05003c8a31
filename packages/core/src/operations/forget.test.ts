import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createCore, type Core } from '../create-core.js';
import { SourceRegistry, TargetRegistry, type Logger } from '../services.js';
import { SnapshotNotFoundError, UsageError } from '../errors.js';
import { MemoryTarget } from '../testing/memory-target.js';
import { memorySource } from '../testing/memory-source.js';
import type { Target } from '../target.js';
import type { LoadedJob } from '../job/job-loader.js';
import { InitOperation } from './init.js';
import { BackupOperation } from './backup.js';
import { SnapshotsOperation } from './snapshots.js';
import { ForgetOperation, type ForgetResult } from './forget.js';

/*
 * ForgetOperation through the core's container, on a memory target, with snapshots made by
 * the real backup at chosen times: what it keeps, what it removes, that it removes nothing
 * else (also when the target fails halfway), and where it refuses.
 */

const IMAGE = randomBytes(200_000);

function jobNamed(name: string, retention?: LoadedJob['config']['retention']): LoadedJob {
  return {
    info: { name, file: `/jobs/${name}.json`, job: {} },
    config: { name, source: { type: 'memory' }, target: { type: 'memory' }, password: { env: 'PW' }, chunkSize: 64 * 1024, ...(retention && { retention }) },
    baseDir: '/jobs',
  };
}

describe('ForgetOperation', () => {
  let dir: string;
  let core: Core;
  let target: MemoryTarget;
  /** Target calls by kind, to see what a run touched. */
  let calls: { put: string[]; remove: string[]; list: number };
  /** When set, a remove of this key fails (a target error halfway through). */
  let failRemove: ((key: string) => boolean) | undefined;
  let warnings: string[];
  const job = jobNamed('ops');

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-forget-'));
    await writeFile(join(dir, 'plugins.json'), JSON.stringify({ plugins: [] }));
    warnings = [];
    const logger: Logger = { debug() {}, info() {}, warn: (m) => void warnings.push(m), error() {} };
    core = await createCore({ pluginsFile: join(dir, 'plugins.json'), logger, env: { PW: 'pw' }, cwd: dir });
    target = new MemoryTarget();
    calls = { put: [], remove: [], list: 0 };
    failRemove = undefined;
    // Each operation disposes the target it opened; the repository must outlive them.
    const view: Target = {
      location: target.location,
      put: (key, data) => (calls.put.push(key), target.put(key, data)),
      get: (key, range) => target.get(key, range),
      stat: (key) => target.stat(key),
      list: (prefix) => (calls.list++, target.list(prefix)),
      remove: async (key) => {
        calls.remove.push(key);
        if (failRemove?.(key)) throw new Error(`disk gone while removing ${key}`);
        return target.remove(key);
      },
      isNotFound: (err) => target.isNotFound(err),
      dispose() {},
    };
    core.get<TargetRegistry>(TargetRegistry).register('memory', { create: async () => view });
    core.get<SourceRegistry>(SourceRegistry).register('memory', { open: async () => memorySource(IMAGE) });
    await core.get(InitOperation).run(job);
  });
  afterEach(async () => {
    await core.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  /** Backs up at `time` with `tags`; returns the snapshot id. */
  async function backupAt(time: string, tags: string[] = [], of: LoadedJob = job): Promise<string> {
    const { result } = await core.get(BackupOperation).run(of, { time: new Date(time), tags });
    return result.snapshot;
  }

  async function remaining(): Promise<string[]> {
    return (await core.get(SnapshotsOperation).list(job)).map((s) => s.id);
  }

  function resetCalls(): void {
    calls = { put: [], remove: [], list: 0 };
  }

  const idsOf = (result: ForgetResult) => ({
    keep: result.groups.flatMap((g) => g.keep.map((k) => [k.id, k.reasons.join(', ')])),
    remove: result.groups.flatMap((g) => g.remove.map((r) => r.id)),
  });

  it('records --time and --tag in the manifest, and no tags field without tags', async () => {
    const tagged = await backupAt('2026-05-01T10:00:00Z', ['keep', 'db']);
    const plain = await backupAt('2026-05-02T10:00:00Z');
    const listed = await core.get(SnapshotsOperation).list(job);
    expect(listed.map((s) => [s.id, s.manifest.time, s.manifest.tags])).toEqual([
      [tagged, '2026-05-01T10:00:00.000Z', ['keep', 'db']],
      [plain, '2026-05-02T10:00:00.000Z', undefined],
    ]);
    expect('tags' in listed[1]!.manifest).toBe(false);
  });

  it("applies the job's retention per group, keeps by rule, and removes only the rest, under a lock it releases", async () => {
    // Berlin: 10 June 23:00, 11 June 01:30 (23:30 UTC the day before), 11 June 12:00; and 9 June, tagged.
    const a = await backupAt('2026-06-09T10:00:00Z', ['keep']);
    const b = await backupAt('2026-06-10T21:00:00Z');
    const c = await backupAt('2026-06-10T23:30:00Z');
    const d = await backupAt('2026-06-11T10:00:00Z');
    resetCalls();
    const result = await core.get(ForgetOperation).run(jobNamed('ops', { keepDaily: 2, keepTags: ['keep'], timeZone: 'Europe/Berlin' }));
    expect(result.policy).toEqual({ keepDaily: 2, keepTags: ['keep'] });
    expect(result.timeZone).toBe('Europe/Berlin');
    expect(result.dryRun).toBe(false);
    expect(result.groups.map((g) => g.key)).toEqual([{ host: hostname(), job: 'ops' }]);
    expect(idsOf(result)).toEqual({ keep: [[d, 'daily 1'], [b, 'daily 2'], [a, 'tag keep']], remove: [c] });
    expect(result.groups[0]!.keep[2]).toEqual({ id: a, time: '2026-06-09T10:00:00.000Z', host: hostname(), job: 'ops', tags: ['keep'], reasons: ['tag keep'] });
    expect(result.removed).toEqual([c]);
    expect((await remaining()).sort()).toEqual([a, b, d].sort());
    // One lock written and removed again; the only other removal is the forgotten snapshot.
    expect(calls.put.filter((k) => k.startsWith('locks/'))).toHaveLength(1);
    expect(calls.remove.sort()).toEqual([calls.put[0]!, `snapshots/${c}`].sort());
    expect([...(await collect(target.list('locks/')))]).toEqual([]);
  });

  it('a dry run decides the same and writes or removes nothing, not even a lock', async () => {
    const ids = [await backupAt('2026-06-01T10:00:00Z'), await backupAt('2026-06-02T10:00:00Z'), await backupAt('2026-06-03T10:00:00Z')];
    resetCalls();
    const result = await core.get(ForgetOperation).run(job, { policy: { keepLast: 1 }, dryRun: true });
    expect(idsOf(result)).toEqual({ keep: [[ids[2], 'last 1']], remove: [ids[1], ids[0]] });
    expect(result).toMatchObject({ removed: [], dryRun: true });
    expect(calls.put).toEqual([]);
    expect(calls.remove).toEqual([]);
    expect(await remaining()).toEqual(ids);
  });

  it("flags replace the job's policy; the job's time zone still applies to them", async () => {
    const ids = [await backupAt('2026-06-10T21:00:00Z'), await backupAt('2026-06-10T23:30:00Z'), await backupAt('2026-06-11T10:00:00Z')];
    const withJobPolicy = jobNamed('ops', { keepLast: 3, timeZone: 'Europe/Berlin' });
    const result = await core.get(ForgetOperation).run(withJobPolicy, { policy: { keepDaily: 5 }, dryRun: true });
    expect(result.policy).toEqual({ keepDaily: 5 });
    // Berlin: the last two are both 11 June.
    expect(idsOf(result)).toEqual({ keep: [[ids[2], 'daily 1'], [ids[0], 'daily 2']], remove: [ids[1]] });
    const utc = await core.get(ForgetOperation).run(withJobPolicy, { policy: { keepDaily: 5 }, timeZone: 'UTC', dryRun: true });
    // UTC: the first two are both 10 June.
    expect(idsOf(utc)).toEqual({ keep: [[ids[2], 'daily 1'], [ids[1], 'daily 2']], remove: [ids[0]] });
  });

  it('refuses to run without a policy, before touching the repository', async () => {
    await backupAt('2026-06-01T10:00:00Z');
    resetCalls();
    for (const [of, options] of [
      [job, {}],
      [jobNamed('ops', {}), {}],
      [jobNamed('ops', { timeZone: 'UTC' }), {}],
      [job, { policy: { keepLast: 0, keepTags: [] } }],
      // Flags given: the job's policy is not used, even when theirs is empty.
      [jobNamed('ops', { keepLast: 1 }), { policy: { keepDaily: 0 } }],
    ] as const) {
      await expect(core.get(ForgetOperation).run(of, options)).rejects.toThrow(UsageError);
    }
    await expect(core.get(ForgetOperation).run(job, { policy: { keepLast: 1 }, snapshots: ['abcd'] })).rejects.toThrow(/not both/);
    expect(calls).toEqual({ put: [], remove: [], list: 0 });
  });

  it('a target failing halfway leaves every kept snapshot, and says how far it got', async () => {
    const ids: string[] = [];
    for (let day = 1; day <= 5; day++) ids.push(await backupAt(`2026-06-0${day}T10:00:00Z`));
    let snapshotRemovals = 0;
    failRemove = (key) => key.startsWith('snapshots/') && ++snapshotRemovals === 2;
    resetCalls();
    await expect(core.get(ForgetOperation).run(job, { policy: { keepLast: 2 } })).rejects.toThrow(/disk gone while removing snapshots\//);
    // Oldest first: the first went, the second failed, the third was never tried.
    expect(calls.remove.filter((k) => k.startsWith('snapshots/'))).toEqual([`snapshots/${ids[0]}`, `snapshots/${ids[1]}`]);
    expect(await remaining()).toEqual(ids.slice(1));
    expect(warnings).toEqual([expect.stringMatching(/forget removed 1 of 3 snapshots, then failed on [0-9a-f]{12}; every snapshot it keeps is untouched/)]);
    // The lock was released all the same.
    expect([...(await collect(target.list('locks/')))]).toEqual([]);
    // Run again: it finishes.
    failRemove = undefined;
    const again = await core.get(ForgetOperation).run(job, { policy: { keepLast: 2 } });
    expect(again.removed).toEqual([ids[1], ids[2]]);
    expect(await remaining()).toEqual(ids.slice(3));
  });

  it("touches only the job's own snapshots, unless asked for all jobs; groups by job then", async () => {
    const other = jobNamed('other');
    const mine = [await backupAt('2026-06-01T10:00:00Z'), await backupAt('2026-06-03T10:00:00Z')];
    const theirs = [await backupAt('2026-06-02T10:00:00Z', [], other), await backupAt('2026-06-04T10:00:00Z', [], other)];
    const own = await core.get(ForgetOperation).run(job, { policy: { keepLast: 1 }, dryRun: true });
    expect(idsOf(own)).toEqual({ keep: [[mine[1], 'last 1']], remove: [mine[0]] });
    const all = await core.get(ForgetOperation).run(job, { policy: { keepLast: 1 }, allJobs: true, dryRun: true });
    expect(all.groups.map((g) => [g.key.job, g.keep.map((k) => k.id), g.remove.map((r) => r.id)])).toEqual([
      ['ops', [mine[1]], [mine[0]]],
      ['other', [theirs[1]], [theirs[0]]],
    ]);
    // Grouped by host only, the two jobs are one group.
    const byHost = await core.get(ForgetOperation).run(job, { policy: { keepLast: 1 }, allJobs: true, groupBy: ['host'], dryRun: true });
    expect(byHost.groups.map((g) => [g.key, g.keep.map((k) => k.id)])).toEqual([[{ host: hostname() }, [theirs[1]]]]);
  });

  it('groups by tags when asked', async () => {
    const x1 = await backupAt('2026-06-01T10:00:00Z', ['x']);
    const plain1 = await backupAt('2026-06-02T10:00:00Z');
    const x2 = await backupAt('2026-06-03T10:00:00Z', ['x']);
    const plain2 = await backupAt('2026-06-04T10:00:00Z');
    const result = await core.get(ForgetOperation).run(job, { policy: { keepLast: 1 }, groupBy: ['tags'], dryRun: true });
    expect(result.groups.map((g) => [g.key, g.keep.map((k) => k.id), g.remove.map((r) => r.id)])).toEqual([
      [{ tags: [] }, [plain2], [plain1]],
      [{ tags: ['x'] }, [x2], [x1]],
    ]);
  });

  it('leaves a snapshot whose manifest cannot be read to the policy, says so, and removes it when named', async () => {
    const ids = [await backupAt('2026-06-01T10:00:00Z'), await backupAt('2026-06-02T10:00:00Z')];
    const damaged = 'ab'.repeat(32);
    await target.put(`snapshots/${damaged}`, Buffer.from('not a sealed manifest'));
    const result = await core.get(ForgetOperation).run(job, { policy: { keepLast: 1 } });
    expect(idsOf(result)).toEqual({ keep: [[ids[1], 'last 1']], remove: [ids[0]] });
    expect(result.unreadable).toEqual([damaged]);
    expect(warnings).toEqual([expect.stringMatching(/^1 snapshot\(s\) cannot be read and are left as they are .*: abababababab$/)]);
    expect(await target.stat(`snapshots/${damaged}`)).toBeDefined();
    const named = await core.get(ForgetOperation).run(job, { snapshots: [damaged.slice(0, 6)] });
    expect(named.groups[0]!.remove).toEqual([{ id: damaged, time: '', host: '', job: '', tags: [], unreadable: true }]);
    expect(named.removed).toEqual([damaged]);
    await expect(target.stat(`snapshots/${damaged}`)).rejects.toThrow();
    expect(await remaining()).toEqual([ids[1]]);
  });

  it('forgets exactly the snapshots named, by id, prefix or latest; a bad name removes nothing', async () => {
    const ids = [await backupAt('2026-06-01T10:00:00Z'), await backupAt('2026-06-02T10:00:00Z'), await backupAt('2026-06-03T10:00:00Z')];
    resetCalls();
    let unknown = 0;
    while (ids.some((id) => id.startsWith(unknown.toString(16).padStart(4, '0')))) unknown++;
    // A good name and an unknown one: nothing at all is removed.
    await expect(core.get(ForgetOperation).run(job, { snapshots: [ids[0]!.slice(0, 8), unknown.toString(16).padStart(4, '0')] })).rejects.toThrow(SnapshotNotFoundError);
    expect(calls.remove.filter((k) => k.startsWith('snapshots/'))).toEqual([]);
    const result = await core.get(ForgetOperation).run(job, { snapshots: [ids[0]!.slice(0, 8), 'latest', ids[0]!] });
    expect(result.policy).toBeUndefined();
    expect(result.groups).toEqual([{ key: {}, keep: [], remove: [expect.objectContaining({ id: ids[2] }), expect.objectContaining({ id: ids[0] })] }]);
    expect(result.removed.sort()).toEqual([ids[0], ids[2]].sort());
    expect(await remaining()).toEqual([ids[1]]);
  });
});

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
}
