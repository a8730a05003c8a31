import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  expectSuccess,
  init,
  listPacks,
  parseJson,
  randomBytesFor,
  restore,
  runCli,
  sameBytes,
  snapshots,
  startCli,
  useTempDir,
  writeJob,
  type CliResult,
  type PruneSummary,
} from './utils/index.js';

/*
 * Several writers into one repository at once: each takes a shared lock, stores its packs and
 * index files beside the others', and none of them is mistaken for garbage by a later prune.
 */

interface CheckJson {
  problems: unknown[];
  unreferencedPacks: unknown[];
}

const WRITERS = 4;

/** A raw volume: `seed`-determined random data, with a run of zeros (a hole) in the middle. */
async function writeVolume(path: string, seed: string, bytes: number): Promise<void> {
  const handle = await open(path, 'w');
  try {
    await handle.write(randomBytesFor(`${seed}-head`, bytes / 2 - 4 * MiB), 0, undefined, 0);
    await handle.write(randomBytesFor(`${seed}-tail`, bytes / 2 - 4 * MiB), 0, undefined, bytes / 2 + 4 * MiB);
  } finally {
    await handle.close();
  }
}

describe('concurrent writers', () => {
  test(`${WRITERS} backups of different volumes into the same local repository at once: all succeed and restore identical, check --read-data is clean, and prune finds nothing unused`, { timeout: 240_000 }, async () => {
    const dir = await useTempDir();
    const names = Array.from({ length: WRITERS }, (_, i) => `writer-${i}`);
    const volumes = names.map((name) => join(dir, `${name}.img`));
    // Different sizes, so that the writers end at different moments; large enough that each one's
    // storing (seconds) outlasts the others' start-up (key derivation, on a busy 2-core machine).
    await Promise.all(volumes.map((volume, i) => writeVolume(volume, names[i]!, (96 + 16 * i) * MiB)));
    const jobs = await Promise.all(names.map((name, i) => writeJob(dir, { name, source: volumes[i]!, compression: { type: 'zstd', level: 1 } }, `${name}.json`)));
    await init(jobs[0]!);

    const ended = await Promise.all(jobs.map((job) => startCli(['backup', job, '--json'], { env: PASSWORD_ENV }).result));
    for (const result of ended) expectSuccess(result);
    const summaries = ended.map((result) => parseJson<{ snapshot: string; bytesAdded: number; time: string; durationMs: number }>(result));
    // They ran at once: each backup's run (its snapshot time plus its duration) overlaps another's.
    // Not "all started before the first ended": on a loaded 2-core machine one writer's start-up
    // (key derivation) may outlast the smallest writer's whole run, and that proves nothing amiss.
    const spans = summaries.map((s) => ({ from: Date.parse(s.time), to: Date.parse(s.time) + s.durationMs }));
    for (const [i, span] of spans.entries()) {
      const overlapping = spans.filter((other, j) => j !== i && other.from < span.to && span.from < other.to);
      expect(overlapping.length, `${names[i]} ran beside another writer`).toBeGreaterThan(0);
    }

    const listed = await snapshots(jobs[0]!);
    expect(listed.map((s) => s.id).sort()).toEqual(summaries.map((s) => s.snapshot).sort());
    for (const [i, summary] of summaries.entries()) {
      const restored = join(dir, `restored-${i}.img`);
      await restore(jobs[i]!, summary.snapshot, restored);
      expect(await sameBytes(volumes[i]!, restored), `${names[i]} restores identical`).toBe(true);
    }
    const check = await runCli(['check', jobs[0]!, '--read-data', '--json'], { env: PASSWORD_ENV });
    expectSuccess(check);
    expect(parseJson<CheckJson>(check)).toMatchObject({ problems: [], unreferencedPacks: [] });

    // Nothing any writer stored is garbage: no unused pack, no orphan, nothing deleted or repacked.
    const packsBefore = await listPacks(join(dir, 'repo'));
    const pruned: CliResult = await runCli(['prune', jobs[0]!, '--json'], { env: PASSWORD_ENV });
    expectSuccess(pruned);
    expect(parseJson<PruneSummary>(pruned)).toMatchObject({
      snapshots: WRITERS,
      packs: { stored: packsBefore.length, unused: 0, orphans: 0, repacked: 0, kept: packsBefore.length },
      bytesDeleted: 0,
      bytesWritten: 0,
      postponedPacks: 0,
      staleLocksRemoved: 0,
      leftoversRemoved: 0,
    });
    expect(await listPacks(join(dir, 'repo'))).toEqual(packsBefore);
    const after = await runCli(['check', jobs[0]!, '--json'], { env: PASSWORD_ENV });
    expectSuccess(after);
    expect(parseJson<CheckJson>(after).problems).toEqual([]);
  });
});
