import { readdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, test } from 'vitest';
import {
  FIXTURE_PLUGINS,
  MiB,
  PASSWORD_ENV,
  backup,
  expectSuccess,
  init,
  parseJson,
  randomBytesFor,
  restore,
  runCli,
  sameBytes,
  snapshots,
  startCli,
  treeBytes,
  useTempDir,
  writeJob,
  writePluginsFile,
  type CliResult,
  overwriteWithRandom,
  type PruneSummary,
} from './utils/index.js';

/*
 * prune deletes what no snapshot needs, in two phases (docs/FORMAT.md, Prune): it marks
 * packs, and deletes them once every operation that started before the mark has finished,
 * keeping those that a snapshot written meanwhile needs.
 */

async function prune(job: string, args: string[] = [], plugins?: string): Promise<PruneSummary> {
  const result = await runCli(['prune', job, '--json', ...args], { env: PASSWORD_ENV, plugins });
  expectSuccess(result);
  return parseJson<PruneSummary>(result);
}

async function checkClean(job: string, plugins?: string): Promise<void> {
  const result = await runCli(['check', job, '--read-data', '--json'], { env: PASSWORD_ENV, plugins });
  expectSuccess(result);
  expect(parseJson<{ problems: unknown[]; unreferencedPacks: unknown[] }>(result).problems).toEqual([]);
}

async function forgetSnapshot(job: string, id: string): Promise<void> {
  expectSuccess(await runCli(['forget', job, id], { env: PASSWORD_ENV }));
}

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, running?: { result: Promise<CliResult> }): Promise<void> {
  let exited: CliResult | undefined;
  void running?.result.then((r) => (exited = r));
  const deadline = Date.now() + 60_000;
  while (!(await condition())) {
    if (exited) throw new Error(`waiting for ${what}, the command exited: ${exited.stderr}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('prune', () => {
  test('after snapshots are forgotten, prune frees their data (measured on disk), and what remains restores identical', async () => {
    const dir = await useTempDir();
    const repository = join(dir, 'repo');
    const volume = join(dir, 'volume.img');
    await writeFile(volume, randomBytesFor('prune-base', 64 * MiB));
    const job = await writeJob(dir, { source: volume, compression: { type: 'none' }, chunkSize: 1 * MiB });
    await init(job);
    const first = await backup(job);
    await overwriteWithRandom(volume, 0, 32 * MiB, 'prune-second');
    const second = await backup(job);
    await overwriteWithRandom(volume, 48 * MiB, 8 * MiB, 'prune-third');
    const third = await backup(job);

    await forgetSnapshot(job, first.snapshot);
    await forgetSnapshot(job, second.snapshot);
    const dryRun = await prune(job, ['--dry-run']);
    expect(dryRun.bytesDeleted).toBeGreaterThan(0);
    const before = await treeBytes(repository);
    expect(await treeBytes(repository)).toBe(before);

    const pruned = await prune(job);
    const after = await treeBytes(repository);
    // Packs whose bytes only earlier snapshots needed are gone; packs at least half unused
    // were repacked. The figures prune reports are what the disk shows.
    expect(pruned.bytesFreed).toBeGreaterThan(16 * MiB);
    expect(Math.abs(before - after - pruned.bytesFreed)).toBeLessThan(64 * 1024); // index files rewritten on top
    expect(pruned).toMatchObject({ snapshots: 1, postponedPacks: 0, keptAfterAll: 0 });
    // Repacking every pack with any unused byte leaves the third snapshot's 64 MiB: the 32 MiB
    // the second backup rewrote, then the 8 MiB the third rewrote, are gone.
    const thorough = await prune(job, ['--repack-threshold', '1']);
    const final = await treeBytes(repository);
    expect(before - final).toBeGreaterThanOrEqual(40 * MiB * 0.99);
    expect(final).toBeLessThan(65 * MiB);
    expect(Math.abs(after - final - thorough.bytesFreed)).toBeLessThan(64 * 1024);

    await restore(job, third.snapshot, join(dir, 'third.img'));
    expect(await sameBytes(volume, join(dir, 'third.img'))).toBe(true);
    await checkClean(job);
    expect(await readdir(join(repository, 'marks'))).toEqual([]);
    // Nothing left to do.
    expect(await prune(job)).toMatchObject({ bytesDeleted: 0, bytesWritten: 0, packs: { unused: 0, orphans: 0, repacked: 0 } });
  });

  test('a backup running during prune keeps every pack it deduplicated against, even ones prune had marked', async () => {
    const dir = await useTempDir();
    const repository = join(dir, 'repo');
    const volume = join(dir, 'volume.img');
    await writeFile(volume, randomBytesFor('prune-running', 24 * MiB));
    const plugins = await writePluginsFile(dir, [join(FIXTURE_PLUGINS, 'gated-source')]);
    const job = await writeJob(dir, { source: volume });
    const gate = join(dir, 'gate');
    const opened = join(dir, 'opened');
    const gated = await writeJob(dir, { source: volume, extra: { source: { type: 'gated', path: volume, gate, openedMarker: opened } } }, 'gated.json');
    await init(job);
    const forgotten = await backup(job);
    await forgetSnapshot(job, forgotten.snapshot);

    // The gated backup loads the index (the forgotten snapshot's blobs included), then waits.
    const running = startCli(['backup', gated, '--json'], { env: PASSWORD_ENV, plugins });
    await waitFor('the gated backup to start reading', () => existsSync(opened), running);
    const pruning = startCli(['prune', job, '--json', '--max-wait', '2m'], { env: PASSWORD_ENV, plugins });
    await waitFor('prune to mark the unused packs', async () => (await readdir(join(repository, 'marks')).catch(() => [])).length > 0, pruning);
    await writeFile(gate, '');

    const backedUp = await running.result;
    expectSuccess(backedUp);
    const summary = parseJson<{ snapshot: string; bytesAdded: number }>(backedUp);
    expect(summary.bytesAdded).toBeLessThan(1 * MiB); // it deduplicated against the marked packs
    const pruneResult = await pruning.result;
    expectSuccess(pruneResult);
    const pruned = parseJson<PruneSummary>(pruneResult);
    expect(pruned.packs.unused).toBeGreaterThan(0);
    expect(pruned.keptAfterAll).toBe(pruned.packs.unused);
    expect(pruned.bytesDeleted).toBe(0);

    await restore(job, summary.snapshot, join(dir, 'restored.img'));
    expect(await sameBytes(volume, join(dir, 'restored.img'))).toBe(true);
    await checkClean(job, plugins);
    expect(await readdir(join(repository, 'marks'))).toEqual([]);
  });

  test('while an older operation runs, marked packs wait for the next prune, and new backups store their data anew', async () => {
    const dir = await useTempDir();
    const repository = join(dir, 'repo');
    const volume = join(dir, 'volume.img');
    const other = join(dir, 'other.img');
    await writeFile(volume, randomBytesFor('prune-postponed', 16 * MiB));
    await writeFile(other, randomBytesFor('prune-other', 4 * MiB));
    const plugins = await writePluginsFile(dir, [join(FIXTURE_PLUGINS, 'gated-source')]);
    const job = await writeJob(dir, { source: volume });
    const gate = join(dir, 'gate');
    const opened = join(dir, 'opened');
    const gated = await writeJob(dir, { source: other, extra: { source: { type: 'gated', path: other, gate, openedMarker: opened } } }, 'gated.json');
    await init(job);
    const forgotten = await backup(job);
    await forgetSnapshot(job, forgotten.snapshot);

    const holding = startCli(['backup', gated, '--json'], { env: PASSWORD_ENV, plugins });
    await waitFor('the gated backup to start reading', () => existsSync(opened), holding);
    const postponed = await prune(job, ['--max-wait', '0'], plugins);
    expect(postponed.packs.unused).toBeGreaterThan(0);
    expect(postponed.postponedPacks).toBe(postponed.packs.unused);
    expect(postponed.bytesDeleted).toBe(0);

    // A backup that starts now sees the mark: it stores the volume again instead of counting on marked packs.
    const again = await backup(job);
    expect(again.bytesAdded).toBeGreaterThan(15 * MiB);
    await writeFile(gate, '');
    expectSuccess(await holding.result);

    const swept = await prune(job, [], plugins);
    expect(swept.bytesDeleted).toBeGreaterThan(15 * MiB);
    expect(swept.keptAfterAll).toBe(0);
    await restore(job, again.snapshot, join(dir, 'again.img'));
    expect(await sameBytes(volume, join(dir, 'again.img'))).toBe(true);
    expect((await snapshots(job, { plugins })).length).toBe(2);
    await checkClean(job, plugins);
  });

  test('forget --prune forgets and prunes in one run', async () => {
    const dir = await useTempDir();
    const volume = join(dir, 'volume.img');
    await writeFile(volume, randomBytesFor('forget-prune', 8 * MiB));
    const job = await writeJob(dir, { source: volume, compression: { type: 'none' } });
    await init(job);
    await backup(job);
    await overwriteWithRandom(volume, 0, 8 * MiB, 'forget-prune-2');
    const kept = await backup(job);
    const result = await runCli(['forget', job, '--keep-last', '1', '--prune', '--json'], { env: PASSWORD_ENV });
    expectSuccess(result);
    const json = parseJson<{ removed: string[]; prune: PruneSummary }>(result);
    expect(json.removed).toHaveLength(1);
    expect(json.prune.bytesFreed).toBeGreaterThan(7 * MiB);
    expect((await snapshots(job)).map((s) => s.id)).toEqual([kept.snapshot]);
    await restore(job, kept.snapshot, join(dir, 'kept.img'));
    expect(await sameBytes(volume, join(dir, 'kept.img'))).toBe(true);
  });

  test('with nothing to delete, prune still merges the small index files many runs left', async () => {
    const dir = await useTempDir();
    const repository = join(dir, 'repo');
    const volume = join(dir, 'volume.img');
    await writeFile(volume, randomBytesFor('merge-0', 1 * MiB));
    const job = await writeJob(dir, { source: volume, compression: { type: 'none' }, chunkSize: 64 * 1024 });
    await init(job);
    const made = [];
    for (let i = 0; i < 18; i++) {
      await overwriteWithRandom(volume, 0, 64 * 1024, `merge-${i}`);
      made.push(await backup(job));
    }
    expect((await readdir(join(repository, 'index'))).length).toBeGreaterThan(16);
    const pruned = await prune(job);
    expect(pruned).toMatchObject({ bytesDeleted: 0, packs: { unused: 0, orphans: 0 } });
    expect(pruned.indexFiles.after).toBe(1);
    expect(await readdir(join(repository, 'index'))).toHaveLength(1);
    await restore(job, made[0]!.snapshot, join(dir, 'first.img'));
    await checkClean(job);
  });
});
