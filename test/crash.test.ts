import { copyFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, test } from 'vitest';
import { TEMP_PREFIX } from '@cairn/core';
import {
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
  type RunningCli,
  overwriteWithRandom,
} from './utils/index.js';

/*
 * A backup or prune killed with SIGKILL at any moment leaves every earlier snapshot
 * restorable and `check` clean, and the next run of the same kind completes and reuses what
 * the killed one stored.
 */

const KILL_POINTS = 20;

/** Starts a cairn command and SIGKILLs it after `delayMs`, or once `until` holds; resolves once it is gone. */
async function killAt(args: string[], delayMs: number, until?: () => Promise<boolean>): Promise<{ killed: boolean; ranMs: number }> {
  const started = Date.now();
  const running: RunningCli = startCli(args, { env: PASSWORD_ENV });
  let exited = false;
  void running.result.then(() => (exited = true));
  const deadline = Date.now() + delayMs;
  try {
    while (!exited && Date.now() < deadline && !(until && (await until()))) await sleep(until ? 5 : Math.min(10, deadline - Date.now()));
  } finally {
    running.child.kill('SIGKILL');
  }
  const result = await running.result;
  return { killed: result.signal === 'SIGKILL', ranMs: Date.now() - started };
}

/**
 * Bytes of the objects in a repository folder that is being written to (files may vanish while
 * it is read). Temporary files are not counted: they are uploads under way (up to three packs),
 * which a kill loses, so counting them made "70% uploaded" mean as little as 50% kept.
 */
async function bytesUnder(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && !entry.name.startsWith(TEMP_PREFIX)) total += (await stat(join(entry.parentPath, entry.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

async function checkStructure(job: string): Promise<void> {
  const result = await runCli(['check', job, '--json'], { env: PASSWORD_ENV });
  expectSuccess(result);
  expect(parseJson<{ problems: unknown[] }>(result).problems).toEqual([]);
}

async function restoresIdentical(job: string, snapshot: string, expected: string, scratch: string): Promise<void> {
  await restore(job, snapshot, scratch, { force: true });
  expect(await sameBytes(expected, scratch), `snapshot ${snapshot.slice(0, 12)} restores identical`).toBe(true);
}

describe('crash safety', () => {
  test(`a backup SIGKILLed at ${KILL_POINTS} moments of its run: earlier snapshots restore identical, check is clean, the next backup completes and adds little`, { timeout: 300_000 }, async () => {
    const dir = await useTempDir();
    const volume = join(dir, 'volume.img');
    await writeFile(volume, randomBytesFor('crash-base', 32 * MiB));
    const job = await writeJob(dir, { source: volume, compression: { type: 'zstd', level: 1 }, chunkSize: 1 * MiB });
    await init(job);
    const base = await backup(job);
    await copyFile(volume, join(dir, 'base.img'));
    // How long a backup of one changed region takes, start to end, to spread the kills over.
    await overwriteWithRandom(volume, 0, 8 * MiB, 'crash-calibrate');
    const started = Date.now();
    let latest = await backup(job);
    let runMs = Date.now() - started;
    await copyFile(volume, join(dir, 'latest.img'));

    const killedAt: number[] = [];
    for (let i = 0; i < KILL_POINTS; i++) {
      await overwriteWithRandom(volume, ((i * 8) % 32) * MiB, 8 * MiB, `crash-${i}`);
      const delay = Math.round(((i + 0.5) / KILL_POINTS) * runMs);
      const { killed, ranMs } = await killAt(['backup', job], delay);
      if (killed) killedAt.push(delay);
      // It ended before its kill: the calibrating run was slower (a loaded machine), so later kills aim within this run's time.
      else runMs = Math.min(runMs, ranMs);

      await checkStructure(job);
      await restoresIdentical(job, base.snapshot, join(dir, 'base.img'), join(dir, 'scratch.img'));
      await restoresIdentical(job, latest.snapshot, join(dir, 'latest.img'), join(dir, 'scratch.img'));
      latest = await backup(job);
      await copyFile(volume, join(dir, 'latest.img'));
      // The change is 8 MiB of incompressible data: the backup after a kill never stores more than that.
      expect(latest.bytesAdded).toBeLessThan(9 * MiB);
    }
    expect(killedAt.length, `kills that landed while the backup ran (of ${KILL_POINTS}, run ${runMs} ms)`).toBeGreaterThanOrEqual(KILL_POINTS * 0.75);
    const check = await runCli(['check', job, '--read-data', '--json'], { env: PASSWORD_ENV });
    expectSuccess(check);
    // No lock of a killed run stays, and no temporary file of one survives the next prune. (A
    // kill while a lock was being written leaves its `.tmp-` file, which is no lock: readers
    // never list it, and prune removes it as any dead writer's leftover.)
    expect((await readdir(join(dir, 'repo', 'locks'))).filter((name) => !name.startsWith('.tmp-'))).toEqual([]);
    expectSuccess(await runCli(['prune', job], { env: PASSWORD_ENV }));
    expect((await readdir(join(dir, 'repo'), { recursive: true })).filter((name) => name.includes('.tmp-'))).toEqual([]);
    await restoresIdentical(job, latest.snapshot, join(dir, 'latest.img'), join(dir, 'scratch.img'));
  });

  test('a backup killed at 70% of its upload: the next backup adds at most 40% of a full one', { timeout: 120_000 }, async () => {
    const dir = await useTempDir();
    const repository = join(dir, 'repo');
    const volume = join(dir, 'volume.img');
    await writeFile(volume, randomBytesFor('crash-70', 256 * MiB));
    const job = await writeJob(dir, { source: volume, compression: { type: 'none' } });
    await init(job);
    const empty = await bytesUnder(repository);
    const full = 256 * MiB;
    const { killed } = await killAt(['backup', job], 60_000, async () => (await bytesUnder(repository)) - empty >= 0.7 * full);
    expect(killed).toBe(true);
    const resumed = await backup(job);
    expect(resumed.bytesAdded).toBeLessThanOrEqual(0.4 * full);
    await restoresIdentical(job, resumed.snapshot, volume, join(dir, 'restored.img'));
    await checkStructure(job);
  });

  test(`prune SIGKILLed at ${KILL_POINTS} moments: every snapshot restores identical, check is clean, the next prune completes`, { timeout: 300_000 }, async () => {
    const dir = await useTempDir();
    const repository = join(dir, 'repo');
    const volume = join(dir, 'volume.img');
    await writeFile(volume, randomBytesFor('prune-crash', 16 * MiB));
    const job = await writeJob(dir, { source: volume, compression: { type: 'none' }, chunkSize: 256 * 1024 });
    await init(job);
    const kept = await backup(job);
    await copyFile(volume, join(dir, 'kept.img'));
    /** A new snapshot of a changed volume, and the one before it forgotten: prune has packs to delete and to repack. */
    let latest: { snapshot: string } | undefined;
    const churn = async (i: number) => {
      await overwriteWithRandom(volume, ((i * 3) % 13) * MiB, 3 * MiB, `prune-crash-${i}`);
      const made = await backup(job);
      if (latest) expectSuccess(await runCli(['forget', job, latest.snapshot], { env: PASSWORD_ENV }));
      await copyFile(volume, join(dir, 'latest.img'));
      return made;
    };
    latest = await churn(-1);
    const started = Date.now();
    const calibration = await runCli(['prune', job, '--repack-threshold', '1'], { env: PASSWORD_ENV });
    expectSuccess(calibration);
    let runMs = Date.now() - started;

    let killed = 0;
    for (let i = 0; i < KILL_POINTS; i++) {
      latest = await churn(i);
      const delay = Math.round(((i + 0.5) / KILL_POINTS) * runMs);
      const attempt = await killAt(['prune', job, '--repack-threshold', '1'], delay);
      if (attempt.killed) killed++;
      // It ended before its kill: the calibrating run was slower (a loaded machine), so later kills aim within this run's time.
      else runMs = Math.min(runMs, attempt.ranMs);
      await checkStructure(job);
      await restoresIdentical(job, kept.snapshot, join(dir, 'kept.img'), join(dir, 'scratch.img'));
      await restoresIdentical(job, latest.snapshot, join(dir, 'latest.img'), join(dir, 'scratch.img'));
      expectSuccess(await runCli(['prune', job, '--repack-threshold', '1'], { env: PASSWORD_ENV }));
    }
    expect(killed, `kills that landed while prune ran (run ${runMs} ms)`).toBeGreaterThanOrEqual(KILL_POINTS * 0.75);
    // After the last complete prune, the repository holds the two snapshots' data and little
    // else: no temporary file of a killed prune survives the next one.
    expect((await snapshots(job)).map((s) => s.id).sort()).toEqual([kept.snapshot, latest.snapshot].sort());
    const rest = await runCli(['prune', job, '--dry-run', '--repack-threshold', '0', '--json'], { env: PASSWORD_ENV });
    expectSuccess(rest);
    // What a prune would still free is only packs' unused slivers (below the 1% threshold), nothing of a killed run.
    const { bytesFreed } = parseJson<{ bytesFreed: number }>(rest);
    expect((await treeBytes(repository)) - bytesFreed).toBeLessThan(16 * MiB + 16 * MiB + 1 * MiB);
    expect((await readdir(repository, { recursive: true })).filter((name) => name.includes('.tmp-'))).toEqual([]);
    const check = await runCli(['check', job, '--read-data', '--json'], { env: PASSWORD_ENV });
    expectSuccess(check);
    expect(parseJson<{ unreferencedPacks: unknown[] }>(check).unreferencedPacks).toEqual([]);
    expect(await readdir(join(repository, 'marks'))).toEqual([]);
  });
});
