import { copyFile, open, readdir, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  backup,
  expectCleanFailure,
  expectSuccess,
  flipByte,
  init,
  listPacks,
  makeVolume,
  parseJson,
  randomBytesFor,
  run,
  runCli,
  sameBytes,
  tempDir,
  useSuiteScope,
  writeJob,
  type BackupSummary,
  type CliResult,
} from './utils/index.js';

/*
 * Damage to a pack, an index file or a snapshot: `check` names the object, the snapshots it
 * costs data and the image ranges lost; a restore of a snapshot that does not need the
 * damaged object succeeds (with a warning when it had to step around it); one that does fails
 * with exit 13 and leaves no file, or with --ignore-damage writes zeros exactly there;
 * `repair index` and `repair snapshots` bring the repository back to a clean check.
 *
 * Two snapshots of a 40 MiB image in 1 MiB chunks. v0 holds 20 MiB of incompressible data, so
 * its backup writes two packs: P1, the first 16 MiB of chunks and nothing else, and P2, the
 * rest and v0's chunk map. v1 is v0 with 4 MiB at 32 MiB rewritten: its backup writes one
 * pack P3 with those 4 chunks and v1's chunk map. Each backup writes one index file.
 */

interface Range {
  offset: number;
  length: number;
}

interface CheckJson {
  problems: Array<{ object: string; message: string; snapshots: string[]; ranges: Record<string, Range[]> }>;
  unreferencedPacks: string[];
}

interface RestoreJson {
  snapshot: string;
  destination: string;
  imageDigest?: unknown;
  lost?: Range[];
  damage?: Array<{ object: string; message: string; ranges: Range[] }>;
  repairedFrom?: string;
}

const SIZE = 40 * MiB;
const REWRITTEN: Range = { offset: 32 * MiB, length: 4 * MiB };

describe('damage: check, restore, repair', () => {
  const scope = useSuiteScope();
  let dir: string;
  /** The image each snapshot was taken of. */
  const sources: string[] = [];
  const made: BackupSummary[] = [];
  let packs: { p1: string; p2: string; p3: string };
  let indexFiles: string[][];
  let copies = 0;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-damage-');
    const { image } = await makeVolume(dir, 'v0', SIZE, { seed: 131, randomBytes: 20 * MiB, textBytes: 2 * MiB });
    const v1 = join(dir, 'v1.img');
    await copyFile(image, v1);
    const handle = await open(v1, 'r+');
    await handle.write(randomBytesFor('v1', REWRITTEN.length), 0, REWRITTEN.length, REWRITTEN.offset);
    await handle.close();
    sources.push(image, v1);

    const job = await writeJob(dir, { source: './disk.img', chunkSize: MiB });
    await init(job);
    const added: string[][] = [];
    indexFiles = [];
    for (const source of sources) {
      await copyFile(source, join(dir, 'disk.img'));
      const before = await listPacks(join(dir, 'repo'));
      const indexBefore = await readdir(join(dir, 'repo', 'index')).catch(() => [] as string[]);
      made.push(await backup(job));
      added.push((await listPacks(join(dir, 'repo'))).filter((p) => !before.includes(p)));
      indexFiles.push((await readdir(join(dir, 'repo', 'index'))).filter((f) => !indexBefore.includes(f)).map((f) => `index/${f}`));
    }
    expect(added.map((p) => p.length), 'v0 took two packs, v1 one').toEqual([2, 1]);
    expect(indexFiles.map((f) => f.length), 'one index file per backup').toEqual([1, 1]);
    // P1 was closed full (16 MiB of chunks); P2 holds the rest and the chunk map.
    const [a, b] = await Promise.all(added[0]!.map(async (p) => ({ p, size: (await stat(join(dir, 'repo', p))).size })));
    const [p1, p2] = a!.size > b!.size ? [a!.p, b!.p] : [b!.p, a!.p];
    packs = { p1, p2, p3: added[1]![0]! };
  });

  /** A copy of the repository and a job for it; `damage` gets the copy's folder. */
  async function damagedCopy(damage: (repo: string) => Promise<void>): Promise<{ job: string; repo: string }> {
    const name = `copy-${++copies}`;
    const repo = join(dir, name);
    await run('cp', ['-a', join(dir, 'repo'), repo]);
    await damage(repo);
    return { job: await writeJob(dir, { source: './disk.img', repository: `./${name}`, chunkSize: MiB }, `${name}.json`), repo };
  }

  const cairn = (args: string[]) => runCli(args, { env: PASSWORD_ENV, cwd: dir });

  async function check(job: string, ...args: string[]): Promise<{ result: CliResult; json: CheckJson }> {
    const result = await cairn(['check', job, '--json', ...args]);
    return { result, json: parseJson<CheckJson>(result) };
  }

  function problem(json: CheckJson, object: string) {
    const found = json.problems.find((p) => p.object === object);
    expect(found, `a problem for ${object} in ${JSON.stringify(json.problems, null, 1)}`).toBeDefined();
    return found!;
  }

  /** The source image of snapshot `k` with `ranges` zeroed, as a file. */
  async function expectedImage(k: number, ranges: readonly Range[]): Promise<string> {
    const path = join(dir, `expected-${++copies}.img`);
    await copyFile(sources[k]!, path);
    const handle = await open(path, 'r+');
    for (const range of ranges) await handle.write(Buffer.alloc(range.length), 0, range.length, range.offset);
    await handle.close();
    return path;
  }

  /** Restores must fail with exit 13 naming `patterns`, without a trace and without leaving any file. */
  async function expectRestoreRefused(job: string, snapshot: string, ...patterns: RegExp[]): Promise<void> {
    const to = join(dir, `refused-${++copies}.img`);
    const result = await cairn(['restore', job, snapshot, '--to', to]);
    expectCleanFailure(result, 13, ...patterns);
    expect((await readdir(dir)).filter((f) => f.includes(`refused-${copies}`)), 'no file, not even a temporary one').toEqual([]);
  }

  function totalLength(ranges: readonly Range[]): number {
    return ranges.reduce((n, r) => n + r.length, 0);
  }

  /** Lost ranges are whole chunks (1 MiB), sorted, and merged: never touching. */
  function expectWholeChunks(ranges: readonly Range[]): void {
    expect(ranges.length).toBeGreaterThan(0);
    for (const [k, range] of ranges.entries()) {
      expect(range.offset % MiB, JSON.stringify(ranges)).toBe(0);
      expect(range.length % MiB, JSON.stringify(ranges)).toBe(0);
      if (k > 0) expect(range.offset, JSON.stringify(ranges)).toBeGreaterThan(ranges[k - 1]!.offset + ranges[k - 1]!.length);
    }
  }

  test('a flipped byte in a pack: check --read-data names it, v1 and the one chunk lost; v0 restores; v1 fails, or with --ignore-damage gets zeros exactly there', async () => {
    const { job, repo } = await damagedCopy(async (repo) => flipByte(join(repo, packs.p3), Math.floor((await stat(join(repo, packs.p3))).size / 2)));
    // The structure is intact: only reading the data finds it.
    expect((await check(job)).result.exitCode).toBe(0);
    const { result, json } = await check(job, '--read-data');
    expect(result.exitCode, result.stderr).toBe(13);
    expect(json.problems.map((p) => p.object)).toEqual([packs.p3]);
    const p3 = problem(json, packs.p3);
    expect(p3.snapshots).toEqual([made[1]!.snapshot]);
    const lost = p3.ranges[made[1]!.snapshot]!;
    expect(lost).toHaveLength(1);
    expect(lost[0]!.length).toBe(MiB);
    expect(lost[0]!.offset).toBeGreaterThanOrEqual(REWRITTEN.offset);
    expect(lost[0]!.offset + lost[0]!.length).toBeLessThanOrEqual(REWRITTEN.offset + REWRITTEN.length);
    const text = await cairn(['check', job, '--read-data']);
    expect(text.stdout).toMatch(new RegExp(`^DAMAGE ${packs.p3}: .*blob.* affects snapshot\\(s\\) ${made[1]!.snapshot.slice(0, 12)}$`, 'm'));
    expect(text.stdout).toContain(`snapshot ${made[1]!.snapshot.slice(0, 12)} loses 1.0 MiB in 1 range(s): ${lost[0]!.offset}+${MiB}`);

    const v0 = join(dir, `v0-${copies}.img`);
    expectSuccess(await cairn(['restore', job, made[0]!.snapshot, '--to', v0]));
    expect(await sameBytes(v0, sources[0]!)).toBe(true);

    await expectRestoreRefused(job, made[1]!.snapshot, new RegExp(`Blob [0-9a-f]{12} \\(image offset ${lost[0]!.offset}\\) cannot be restored: pack ${packs.p3} is damaged`), /--ignore-damage/);

    const to = join(dir, `ignored-${copies}.img`);
    const ignored = await cairn(['restore', job, made[1]!.snapshot, '--to', to, '--ignore-damage', '--json']);
    expect(ignored.exitCode, ignored.stderr).toBe(13);
    const restored = parseJson<RestoreJson>(ignored);
    expect(restored.lost).toEqual(lost);
    expect(restored.damage).toEqual([{ object: packs.p3, message: expect.stringMatching(/fails authentication|does not decompress|does not match its id/), ranges: lost }]);
    expect(restored.imageDigest, 'the image digest cannot match, and is not claimed').toBeUndefined();
    expect(await sameBytes(to, await expectedImage(1, lost))).toBe(true);
    const asText = await cairn(['restore', job, made[1]!.snapshot, '--to', to, '--ignore-damage', '--force']);
    expect(asText.exitCode).toBe(13);
    expect(asText.stdout).toContain(`DAMAGE ${packs.p3}: `);
    expect(asText.stdout).toContain(`Zeros stand in for lost data at 1.0 MiB in 1 range(s): ${lost[0]!.offset}+${MiB}`);

    // repair snapshots --read-data records the loss; the repaired v1 restores with zeros there, and says so.
    const repair = parseJson(await cairn(['repair', 'snapshots', job, '--read-data', '--json']));
    expect(repair.repaired).toEqual([{ snapshot: made[1]!.snapshot, replacement: expect.stringMatching(/^[0-9a-f]{64}$/), lost, lostBytes: MiB }]);
    const repairedTo = join(dir, `repaired-${copies}.img`);
    const repaired = await cairn(['restore', job, repair.repaired[0].replacement, '--to', repairedTo]);
    expectSuccess(repaired);
    expect(repaired.stdout).toMatch(/every chunk verified/);
    expect(repaired.stdout).toContain(`Zeros stand in for lost data at 1.0 MiB in 1 range(s): ${lost[0]!.offset}+${MiB}`);
    expect(await sameBytes(repairedTo, await expectedImage(1, lost))).toBe(true);
    // No snapshot needs the damaged blob any more; the pack itself stays damaged (its other blobs are needed).
    const after = await check(job, '--read-data');
    expect(after.json.problems).toEqual([{ object: packs.p3, message: expect.stringMatching(/blob/), snapshots: [], ranges: {} }]);
    expect((await readdir(join(repo, 'snapshots'))).sort()).toEqual([made[0]!.snapshot, repair.repaired[0].replacement].sort());
  });

  test('a truncated pack: check names it (structure alone finds it), both snapshots and the chunks past its new end; restore fails 13 naming it, or writes zeros exactly there', async () => {
    const { job } = await damagedCopy(async (repo) => truncate(join(repo, packs.p1), Math.floor((await stat(join(repo, packs.p1))).size * 0.6)));
    const { result, json } = await check(job);
    expect(result.exitCode, result.stderr).toBe(13);
    expect(json.problems.map((p) => p.object)).toEqual([packs.p1]);
    const p1 = problem(json, packs.p1);
    expect(p1.message).toMatch(/^pack is truncated/);
    expect(p1.snapshots).toEqual([made[0]!.snapshot, made[1]!.snapshot].sort());
    const lost = p1.ranges[made[0]!.snapshot]!;
    // The chunks in the last 40% of P1's 16 MiB (more than 6 when some compressed well); v1
    // loses the same ones (they lie below 32 MiB).
    expectWholeChunks(lost);
    expect(totalLength(lost) / MiB).toBeGreaterThanOrEqual(4);
    expect(totalLength(lost) / MiB).toBeLessThanOrEqual(12);
    expect(p1.ranges[made[1]!.snapshot]).toEqual(lost);

    await expectRestoreRefused(job, made[0]!.snapshot, new RegExp(`cannot be restored: pack ${packs.p1} is truncated: it has \\d+ bytes`));
    const to = join(dir, `ignored-${copies}.img`);
    const ignored = await cairn(['restore', job, made[0]!.snapshot, '--to', to, '--ignore-damage', '--json']);
    expect(ignored.exitCode, ignored.stderr).toBe(13);
    const restored = parseJson<RestoreJson>(ignored);
    expect(restored.lost).toEqual(lost);
    expect(restored.damage!.map((d) => d.object)).toEqual([packs.p1]);
    expect(await sameBytes(to, await expectedImage(0, lost))).toBe(true);
  });

  test('a missing pack: exit 13 naming data/xx/<id>, never a raw ENOENT; repair index, then repair snapshots, leave a clean check and a repaired snapshot that restores with zeros where the pack was', async () => {
    const { job, repo } = await damagedCopy(async (repo) => unlink(join(repo, packs.p1)));
    const { result, json } = await check(job);
    expect(result.exitCode, result.stderr).toBe(13);
    const p1 = problem(json, packs.p1);
    expect(p1.message).toBe('pack is missing');
    expect(p1.snapshots).toEqual([made[0]!.snapshot, made[1]!.snapshot].sort());
    const lost = p1.ranges[made[0]!.snapshot]!;
    // P1 held at least 16 MiB of sealed chunks, and nothing of v1's rewritten range.
    expectWholeChunks(lost);
    expect(totalLength(lost)).toBeGreaterThanOrEqual(16 * MiB);
    expect(lost.at(-1)!.offset + lost.at(-1)!.length).toBeLessThanOrEqual(REWRITTEN.offset);
    expect(p1.ranges[made[1]!.snapshot]).toEqual(lost);
    await expectRestoreRefused(job, made[1]!.snapshot, new RegExp(`cannot be restored: pack ${packs.p1} is missing`));
    // Reading every byte of what is there finds nothing more.
    expect((await check(job, '--read-data')).json.problems).toEqual(json.problems);

    // repair snapshots would take the index's word for what is lost: it refuses until the index matches the packs.
    const early = await cairn(['repair', 'snapshots', job]);
    expectCleanFailure(early, 13, new RegExp(`${packs.p1}: pack is missing`), /run `cairn repair index` first/);

    const index = await cairn(['repair', 'index', job, '--json']);
    expectSuccess(index);
    expect(parseJson(index)).toMatchObject({ packs: 2, packsAdded: 0, packsMissing: [packs.p1], unreadablePacks: [], indexFilesRemoved: 2 });
    // Now the snapshots need blobs no index names.
    const between = await check(job);
    expect(between.json.problems.map((p) => p.object)).toEqual(made.map((m) => `snapshots/${m.snapshot}`).sort());
    expect(between.json.problems[0]!.ranges[made[0]!.snapshot] ?? between.json.problems[1]!.ranges[made[0]!.snapshot]).toEqual(lost);

    const dry = await cairn(['repair', 'snapshots', job, '--dry-run', '--json']);
    expect(dry.exitCode, dry.stderr).toBe(13);
    expect(parseJson(dry).repaired.map((r: { snapshot: string }) => r.snapshot)).toEqual(made.map((m) => m.snapshot));
    expect((await readdir(join(repo, 'snapshots'))).sort(), 'a dry run changes nothing').toEqual(made.map((m) => m.snapshot).sort());

    const repair = await cairn(['repair', 'snapshots', job, '--json']);
    expectSuccess(repair);
    const report = parseJson(repair);
    expect(report.repaired.map((r: { snapshot: string; lost: Range[] }) => [r.snapshot, r.lost])).toEqual(made.map((m) => [m.snapshot, lost]));
    const clean = await check(job, '--read-data');
    expect(clean.result.exitCode, clean.result.stdout).toBe(0);
    expect(clean.json.problems).toEqual([]);

    const replacement = report.repaired[0].replacement as string;
    const to = join(dir, `repaired-${copies}.img`);
    const restored = await cairn(['restore', job, replacement, '--to', to, '--json']);
    expectSuccess(restored);
    expect(parseJson<RestoreJson>(restored)).toMatchObject({ lost, repairedFrom: made[0]!.snapshot });
    expect(await sameBytes(to, await expectedImage(0, lost))).toBe(true);
    const text = await cairn(['restore', job, replacement, '--to', to, '--force']);
    expect(text.stdout).toMatch(/This snapshot was repaired \(from [0-9a-f]{12}\): zeros stand in for the data it lost/);
    // `latest` is the repaired v1 (a repaired snapshot keeps its time).
    const latest = await cairn(['restore', job, 'latest', '--to', to, '--force', '--json']);
    expect(parseJson<RestoreJson>(latest)).toMatchObject({ repairedFrom: made[1]!.snapshot, lost });
    expect(await sameBytes(to, await expectedImage(1, lost))).toBe(true);
  });

  test('a damaged index file: check names it and what v1 can no longer find; v0 restores with a warning; v1 fails naming the index file; repair index heals it', async () => {
    const damagedIndex = indexFiles[1]![0]!;
    const { job } = await damagedCopy(async (repo) => flipByte(join(repo, damagedIndex), 20));
    const { result, json } = await check(job);
    expect(result.exitCode, result.stderr).toBe(13);
    expect(json.problems.map((p) => p.object)).toEqual([damagedIndex, `snapshots/${made[1]!.snapshot}`]);
    expect(problem(json, damagedIndex).message).toMatch(/^its content does not match its name; the blobs only it named are unknown/);
    // v1's chunk map is in P3, which only that index file named: nothing of v1 can be placed.
    const v1 = problem(json, `snapshots/${made[1]!.snapshot}`);
    expect(v1.message).toMatch(/its chunk maps cannot be read \(blob [0-9a-f]{12} is not in any index\); a damaged index file may have named them/);
    expect(v1.ranges).toEqual({ [made[1]!.snapshot]: [{ offset: 0, length: SIZE }] });
    // P3 is there but no readable index names it.
    expect(json.unreferencedPacks).toEqual([packs.p3.split('/')[2]]);

    const to = join(dir, `v0-${copies}.img`);
    const v0 = await cairn(['restore', job, made[0]!.snapshot, '--to', to]);
    expectSuccess(v0);
    expect(v0.stderr).toMatch(new RegExp(`^cairn: warning: .*${damagedIndex.replace('/', '\\/')} is damaged.*restoring from the other index files`, 'm'));
    expect(await sameBytes(to, sources[0]!)).toBe(true);
    await expectRestoreRefused(job, 'latest', /its chunk maps cannot be read/, new RegExp(`damaged index file\\(s\\) ${damagedIndex}`), /cairn repair index/);

    const repair = await cairn(['repair', 'index', job, '--json']);
    expectSuccess(repair);
    expect(parseJson(repair)).toMatchObject({ packs: 3, packsAdded: 1, packsMissing: [], unreadablePacks: [] });
    expect((await check(job, '--read-data')).json).toMatchObject({ problems: [], unreferencedPacks: [] });
    const v1to = join(dir, `v1-${copies}.img`);
    expectSuccess(await cairn(['restore', job, 'latest', '--to', v1to]));
    expect(await sameBytes(v1to, sources[1]!)).toBe(true);
  });

  test('a backup next to a damaged index file warns, indexes the packs only that file named from their headers instead of storing their data again, and its snapshot restores', async () => {
    const damagedIndex = indexFiles[1]![0]!;
    const { job } = await damagedCopy(async (repo) => flipByte(join(repo, damagedIndex), 20));
    // disk.img holds v1, as the last backup left it.
    const result = await cairn(['backup', job, '--json']);
    expectSuccess(result);
    expect(result.stderr).toMatch(new RegExp(`^cairn: warning: ${damagedIndex.replace('/', '\\/')} is damaged.*indexed again from their own headers`, 'm'));
    const made2 = parseJson<BackupSummary>(result);
    expect(made2.chunks.new, 'the 4 rewritten chunks, whose index file is damaged, are found through their pack').toBe(0);
    const to = join(dir, `rebacked-${copies}.img`);
    const restored = await cairn(['restore', job, made2.snapshot, '--to', to]);
    expectSuccess(restored);
    expect(await sameBytes(to, sources[1]!)).toBe(true);
  });

  test('repair index after every index file is lost: restore works again and check --read-data is clean', async () => {
    const { job, repo } = await damagedCopy(async (repo) => {
      for (const file of await readdir(join(repo, 'index'))) await unlink(join(repo, 'index', file));
    });
    await expectRestoreRefused(job, made[0]!.snapshot, /its chunk maps cannot be read \(blob [0-9a-f]{12} is not in any index\)/, /cairn repair index/);
    const repair = await cairn(['repair', 'index', job]);
    expectSuccess(repair);
    expect(repair.stdout).toMatch(/^Indexed 3 pack\(s\) holding \d+ blob\(s\) in 1 new index file\(s\); removed 0 old one\(s\)$/m);
    expect(repair.stdout).toMatch(/^3 pack\(s\) no index named before are indexed now$/m);
    expect(await readdir(join(repo, 'index'))).toHaveLength(1);
    const clean = await check(job, '--read-data');
    expect(clean.result.exitCode, clean.result.stdout).toBe(0);
    expect(clean.json).toMatchObject({ problems: [], unreferencedPacks: [] });
    for (const [k, m] of made.entries()) {
      const to = join(dir, `reindexed-${k}-${copies}.img`);
      expectSuccess(await cairn(['restore', job, m.snapshot, '--to', to]));
      expect(await sameBytes(to, sources[k]!)).toBe(true);
    }
  });

  test('a flipped snapshot and a garbage file named like one: other snapshots restore (latest too) with a warning; snapshots lists the intact one and exits 13; check names both', async () => {
    const garbage = `snapshots/${'ab'.repeat(32)}`;
    const { job } = await damagedCopy(async (repo) => {
      await flipByte(join(repo, 'snapshots', made[0]!.snapshot), 40);
      await writeFile(join(repo, garbage), 'not a snapshot at all\n');
    });
    const damaged = [`snapshots/${made[0]!.snapshot}`, garbage].sort();
    const { result, json } = await check(job);
    expect(result.exitCode, result.stderr).toBe(13);
    expect(json.problems.map((p) => [p.object, p.snapshots])).toEqual(damaged.map((d) => [d, [d.slice('snapshots/'.length)]]));
    for (const p of json.problems) expect(p.message).toBe('its content does not match its name; nothing of this snapshot can be restored');

    const listed = await cairn(['snapshots', job, '--json']);
    expect(listed.exitCode).toBe(13);
    expect(parseJson<Array<{ id: string }>>(listed).map((s) => s.id)).toEqual([made[1]!.snapshot]);
    for (const object of damaged) expect(listed.stderr).toMatch(new RegExp(`^cairn: warning: ${object.replace('/', '\\/')} is damaged`, 'm'));

    const to = join(dir, `latest-${copies}.img`);
    const latest = await cairn(['restore', job, 'latest', '--to', to]);
    expectSuccess(latest);
    for (const object of damaged) expect(latest.stderr).toMatch(new RegExp(`^cairn: warning: ${object.replace('/', '\\/')} is damaged.*it is left out`, 'm'));
    expect(await sameBytes(to, sources[1]!)).toBe(true);
    // By id, only that manifest is read: nothing to warn about.
    const byId = await cairn(['restore', job, made[1]!.snapshot.slice(0, 8), '--to', to, '--force']);
    expectSuccess(byId);
    expect(byId.stderr).toBe('');
    await expectRestoreRefused(job, made[0]!.snapshot, new RegExp(`snapshots\\/${made[0]!.snapshot} is damaged`));

    // --forget removes what cannot be repaired; then the check is clean.
    const repair = await cairn(['repair', 'snapshots', job, '--forget', '--json']);
    expectSuccess(repair);
    expect(parseJson(repair).unrepairable.map((u: { object: string; removed: boolean }) => [u.object, u.removed])).toEqual(damaged.map((d) => [d, true]));
    expect((await check(job, '--read-data')).json.problems).toEqual([]);
  });

  test('a truncated snapshot: latest falls back to the intact one with a warning; by id it is exit 13 naming it', async () => {
    const { job } = await damagedCopy(async (repo) => truncate(join(repo, 'snapshots', made[1]!.snapshot), 30));
    const to = join(dir, `fallback-${copies}.img`);
    const latest = await cairn(['restore', job, 'latest', '--to', to, '--json']);
    expectSuccess(latest);
    expect(parseJson<RestoreJson>(latest).snapshot).toBe(made[0]!.snapshot);
    expect(latest.stderr).toMatch(new RegExp(`^cairn: warning: snapshots\\/${made[1]!.snapshot} is damaged`, 'm'));
    expect(await sameBytes(to, sources[0]!)).toBe(true);
    await expectRestoreRefused(job, made[1]!.snapshot, new RegExp(`snapshots\\/${made[1]!.snapshot} is damaged`));
    const { result, json } = await check(job);
    expect(result.exitCode).toBe(13);
    expect(json.problems.map((p) => p.object)).toEqual([`snapshots/${made[1]!.snapshot}`]);
  });

  test('--read-data-subset reads only its share: n/m by the first byte of the pack id, x% at random', async () => {
    const { job } = await damagedCopy(async (repo) => flipByte(join(repo, packs.p3), Math.floor((await stat(join(repo, packs.p3))).size / 2)));
    const firstByte = Number.parseInt(packs.p3.split('/')[2]!.slice(0, 2), 16);
    const mine = `${(firstByte % 2) + 1}/2`;
    const other = `${((firstByte + 1) % 2) + 1}/2`;
    const hit = await check(job, '--read-data-subset', mine);
    expect(hit.result.exitCode).toBe(13);
    expect(hit.json).toMatchObject({ readData: true, readDataSubset: mine });
    expect(hit.json.problems.map((p) => p.object)).toEqual([packs.p3]);
    const miss = await check(job, '--read-data-subset', other);
    expect(miss.result.exitCode).toBe(0);
    expect(miss.json).toMatchObject({ readDataSubset: other, problems: [] });
    const all = await check(job, '--read-data-subset', '100%');
    expect(all.json).toMatchObject({ packsRead: 3, problems: [{ object: packs.p3 }] });
    const bad = await cairn(['check', job, '--read-data-subset', '3/2']);
    expectCleanFailure(bad, 2, /--read-data-subset must be n\/m/);
  });
});
