import { cp, readFile, readdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  PASSWORD_ENV,
  expectCleanFailure,
  expectSuccess,
  init,
  parseJson,
  randomBytesFor,
  runCli,
  sameBytes,
  snapshots,
  tempDir,
  useSuiteScope,
  writeJob,
  type CliOptions,
} from './utils/index.js';

/*
 * Retention through the real CLI. Twelve snapshots of a small volume, each with different
 * bytes, at chosen times (`backup --time`), some tagged (`backup --tag`). Each policy runs on
 * its own copy of the repository, so every expected kept set below starts from the same
 * twelve and is worked out by hand from this table (1 March 2026 is a Sunday; Berlin is
 * UTC+1 all along, summer time starts on 29 March):
 *
 *   #   UTC                  Europe/Berlin              ISO week (Berlin)   tags
 *   0   2025-11-15 12:00     Sat 15 Nov 2025 13:00      2025-W46
 *   1   2025-12-31 23:30     Thu  1 Jan 2026 00:30      2026-W01
 *   2   2026-01-31 12:00     Sat 31 Jan 13:00           W05                 keep
 *   3   2026-02-28 23:30     Sun  1 Mar 00:30           W09
 *   4   2026-03-08 22:30     Sun  8 Mar 23:30           W10
 *   5   2026-03-08 23:30     Mon  9 Mar 00:30           W11 (UTC: Sunday, W10)
 *   6   2026-03-10 08:00     Tue 10 Mar 09:00           W11
 *   7   2026-03-10 20:00     Tue 10 Mar 21:00           W11                 other
 *   8   2026-03-11 22:30     Wed 11 Mar 23:30           W11
 *   9   2026-03-11 23:30     Thu 12 Mar 00:30           W11 (UTC: Wednesday)
 *  10   2026-03-12 12:00     Thu 12 Mar 13:00           W11                 keep, db
 *  11   2026-03-13 12:00     Fri 13 Mar 13:00           W11
 */

const TIMES = [
  '2025-11-15T12:00:00Z',
  '2025-12-31T23:30:00Z',
  '2026-01-31T12:00:00Z',
  '2026-02-28T23:30:00Z',
  '2026-03-08T22:30:00Z',
  '2026-03-08T23:30:00Z',
  '2026-03-10T08:00:00Z',
  '2026-03-10T20:00:00Z',
  '2026-03-11T22:30:00Z',
  '2026-03-11T23:30:00Z',
  // Given as Berlin wall-clock time, without an offset, to a backup run with TZ=Europe/Berlin.
  '2026-03-12T13:00:00',
  '2026-03-13T12:00:00Z',
];
const TAGS: Record<number, string[]> = { 2: ['keep'], 7: ['other'], 10: ['keep', 'db'] };
const BERLIN = { TZ: 'Europe/Berlin' };

describe('forget: retention policies through the CLI', () => {
  const scope = useSuiteScope();
  let dir: string;
  /** Snapshot ids, by the number of the table. */
  const ids: string[] = [];
  /** The volume's bytes at each snapshot. */
  const versions: string[] = [];
  let copies = 0;

  const cli = (args: string[], options: CliOptions = {}) => runCli(args, { ...options, env: { ...PASSWORD_ENV, ...options.env } });

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-forget-');
    const job = await writeJob(dir, { source: './disk.img', chunkSize: 64 * 1024, compression: { type: 'none' } });
    await init(job);
    for (const [i, time] of TIMES.entries()) {
      // Each version differs from the last in one 64 KiB block.
      const base = i === 0 ? randomBytesFor('forget-base', 512 * 1024) : await readFile(versions[i - 1]!);
      randomBytesFor(`forget-${i}`, 64 * 1024).copy(base, (i % 8) * 64 * 1024);
      versions.push(join(dir, `v${i}.img`));
      await writeFile(versions[i]!, base);
      await writeFile(join(dir, 'disk.img'), base);
      const tags = (TAGS[i] ?? []).flatMap((tag) => ['--tag', tag]);
      const result = await cli(['backup', job, '--time', time, ...tags, '--json'], { env: BERLIN });
      expectSuccess(result);
      ids.push(parseJson(result).snapshot);
    }
  }, 120_000);

  /** A copy of the twelve-snapshot repository with a job file pointing at it; `retention` goes into the job. */
  async function copy(retention?: Record<string, unknown>): Promise<{ job: string; repository: string }> {
    const n = ++copies;
    const repository = join(dir, `repo-${n}`);
    await cp(join(dir, 'repo'), repository, { recursive: true });
    const job = await writeJob(dir, { source: './disk.img', repository: `./repo-${n}`, extra: retention ? { retention } : {} }, `job-${n}.json`);
    return { job, repository };
  }

  /** The table numbers of the snapshots a repository holds, from its `snapshots` folder. */
  async function held(repository: string): Promise<number[]> {
    const files = await readdir(join(repository, 'snapshots'));
    return files.map((f) => ids.indexOf(f)).sort((a, b) => a - b);
  }

  const numbers = (list: Array<{ id: string }>) => list.map((s) => ids.indexOf(s.id));

  test('backup --time and --tag: each snapshot has the time and tags it was given', async () => {
    const { job } = await copy();
    const rows = await snapshots(job);
    expect(rows.map((r) => r.id)).toEqual(ids);
    expect(rows.map((r) => r.time)).toEqual(TIMES.map((t) => new Date(t.endsWith('Z') ? t : '2026-03-12T12:00:00Z').toISOString()));
    expect(rows.map((r) => r.tags)).toEqual(TIMES.map((_, i) => TAGS[i] ?? []));
    const shown = await cli(['show', job, ids[10]!]);
    expectSuccess(shown);
    expect(shown.stdout).toMatch(/^tags {7}keep, db$/m);
    const listed = await cli(['snapshots', job]);
    expect(listed.stdout).toContain(`${ids[7]!.slice(0, 12)}  2026-03-10T20:00:00.000Z`);
    expect(listed.stdout).toMatch(new RegExp(`^${ids[10]!.slice(0, 12)} .*\\[keep, db\\]$`, 'm'));
  });

  test('backup refuses a --time that is not an ISO 8601 date and a tag with a comma (exit 2), and saves nothing', async () => {
    const { job, repository } = await copy();
    for (const args of [['--time', 'yesterday'], ['--time', '2026-02-30T10:00:00Z'], ['--time', '1773316800']]) {
      expectCleanFailure(await cli(['backup', job, ...args]), 2, /--time: .*(not an ISO 8601 date|not a valid date)/);
    }
    expectCleanFailure(await cli(['backup', job, '--tag', 'a,b']), 2, /--tag: "a,b" holds a comma/);
    expectCleanFailure(await cli(['backup', job, '--tag', '']), 2, /--tag: a tag must not be empty/);
    expect(await held(repository)).toEqual(TIMES.map((_, i) => i));
  });

  test('without any policy, forget refuses (exit 2) and removes nothing; so do bad flags', async () => {
    const { job, repository } = await copy();
    expectCleanFailure(await cli(['forget', job]), 2, /No retention policy/, /--keep-last/);
    expectCleanFailure(await cli(['forget', job, '--keep-last', '0']), 2, /No retention policy/);
    expectCleanFailure(await cli(['forget', job, '--keep-daily', 'seven']), 2, /--keep-daily must be a whole number/);
    expectCleanFailure(await cli(['forget', job, '--keep-within', '30 days']), 2, /--keep-within: "30 days" is not a duration/);
    expectCleanFailure(await cli(['forget', job, '--keep-last', '1', '--time-zone', 'Mars/Olympus']), 2, /--time-zone: "Mars\/Olympus" is not a time zone/);
    expectCleanFailure(await cli(['forget', job, '--keep-last', '1', '--group-by', 'path']), 2, /--group-by: "path"/);
    expectCleanFailure(await cli(['forget', job, '--keep-last', '1', ids[0]!.slice(0, 8)]), 2, /not both/);
    expect(await held(repository)).toEqual(TIMES.map((_, i) => i));
  });

  test('--dry-run prints the decision and removes nothing', async () => {
    const { job, repository } = await copy();
    const json = parseJson(await cli(['forget', job, '--keep-last', '3', '--dry-run', '--json']));
    expect(Object.keys(json).sort()).toEqual(['dryRun', 'groups', 'policy', 'removed', 'timeZone', 'unreadable']);
    expect(json).toMatchObject({ policy: { keepLast: 3 }, dryRun: true, removed: [], unreadable: [] });
    expect(json.groups).toHaveLength(1);
    expect(json.groups[0].key).toEqual({ host: hostname(), job: 'e2e' });
    expect(numbers(json.groups[0].keep)).toEqual([11, 10, 9]);
    expect(json.groups[0].keep.map((k: { reasons: string[] }) => k.reasons)).toEqual([['last 1'], ['last 2'], ['last 3']]);
    expect(numbers(json.groups[0].remove)).toEqual([8, 7, 6, 5, 4, 3, 2, 1, 0]);
    const text = await cli(['forget', job, '--keep-last', '3', '--dry-run']);
    expectSuccess(text);
    expect(text.stdout).toContain(`job e2e: keep 3 snapshots, remove 9`);
    expect(text.stdout).toMatch(/^Dry run: 9 snapshots would be removed; nothing was removed\.$/m);
    expect(await held(repository)).toEqual(TIMES.map((_, i) => i));
    expect(await readdir(join(repository, 'locks'))).toEqual([]);
  });

  test('--keep-daily counts days in the zone asked for: 23:30 UTC is the next day in Berlin', async () => {
    // Berlin, newest first: 11 (13 Mar), 10 (12 Mar; 9 is 12 Mar too), 8 (11 Mar), 7 (10 Mar).
    const berlin = await copy();
    const result = parseJson(await cli(['forget', berlin.job, '--keep-daily', '4', '--time-zone', 'Europe/Berlin', '--json']));
    expect(result.groups[0].keep.map((k: { id: string; reasons: string[] }) => [ids.indexOf(k.id), k.reasons])).toEqual([
      [11, ['daily 1']],
      [10, ['daily 2']],
      [8, ['daily 3']],
      [7, ['daily 4']],
    ]);
    expect(result.timeZone).toBe('Europe/Berlin');
    expect(result.dryRun).toBe(false);
    expect(result.removed.map((id: string) => ids.indexOf(id)).sort((a: number, b: number) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 9]);
    expect(await held(berlin.repository)).toEqual([7, 8, 10, 11]);
    expect(await readdir(join(berlin.repository, 'locks'))).toEqual([]);
    // UTC: 11, 10 (12 Mar), 9 (11 Mar 23:30; 8 is 11 Mar too), 7.
    const utc = await copy();
    expectSuccess(await cli(['forget', utc.job, '--keep-daily', '4', '--time-zone', 'UTC']));
    expect(await held(utc.repository)).toEqual([7, 9, 10, 11]);
  });

  test("the job's retention, in the local zone (TZ), across week, month and year boundaries; kept snapshots restore", async () => {
    const { job, repository } = await copy({ keepLast: 2, keepWeekly: 3, keepMonthly: 4, keepTags: ['keep'] });
    /*
     * Berlin, newest first. last: 11, 10. weekly: 11 (W11; 10-5 are W11 too), 4 (Sunday of W10),
     * 3 (W09: Sunday 1 March). monthly: 11 (March; 3 is 1 March), 2 (January; 1 is 1 January),
     * 0 (November 2025): December and February have none in Berlin. tag keep: 10, 2.
     */
    const result = await cli(['forget', job, '--json'], { env: BERLIN });
    const json = parseJson(result);
    expect(json.policy).toEqual({ keepLast: 2, keepWeekly: 3, keepMonthly: 4, keepTags: ['keep'] });
    expect(json.timeZone).toBe('Europe/Berlin');
    const keep = json.groups[0].keep;
    expect(Object.keys(keep[0]).sort()).toEqual(['host', 'id', 'job', 'reasons', 'tags', 'time']);
    expect(keep.map((k: { id: string; reasons: string[] }) => [ids.indexOf(k.id), k.reasons])).toEqual([
      [11, ['last 1', 'weekly 1', 'monthly 1']],
      [10, ['last 2', 'tag keep']],
      [4, ['weekly 2']],
      [3, ['weekly 3']],
      [2, ['monthly 2', 'tag keep']],
      [0, ['monthly 3']],
    ]);
    expect(keep[1]).toMatchObject({ time: '2026-03-12T12:00:00.000Z', host: hostname(), job: 'e2e', tags: ['keep', 'db'] });
    expect(numbers(json.groups[0].remove)).toEqual([9, 8, 7, 6, 5, 1]);
    expect(await held(repository)).toEqual([0, 2, 3, 4, 10, 11]);

    // Kept snapshots, the oldest and the newest, still restore to their bytes.
    for (const i of [0, 3, 11]) {
      const to = join(dir, `restored-${i}.img`);
      expectSuccess(await cli(['restore', job, ids[i]!.slice(0, 12), '--to', to]));
      expect(await sameBytes(versions[i]!, to), `snapshot ${i} restores`).toBe(true);
    }
  });

  test("the same policy in UTC keeps other snapshots: December 2025 and February have one there", async () => {
    // last: 11, 10. weekly: 11, 5 (Sunday 8 March 23:30 UTC, W10), 3 (Saturday 28 February, W09).
    // monthly: 11 (March), 3 (February), 2 (January), 1 (December 2025). tag keep: 10, 2.
    const { job, repository } = await copy({ keepLast: 2, keepWeekly: 3, keepMonthly: 4, keepTags: ['keep'], timeZone: 'UTC' });
    const text = await cli(['forget', job], { env: BERLIN });
    expectSuccess(text);
    expect(text.stdout).toMatch(/^Policy: keep last 2, weekly 3, monthly 4, tags keep \(time zone UTC\)$/m);
    expect(text.stdout).toContain(`host ${hostname()}, job e2e: keep 6 snapshots, remove 6`);
    expect(text.stdout).toMatch(new RegExp(`^  keep    ${ids[11]!.slice(0, 12)}  2026-03-13 12:00:00 \\+00:00  .*  last 1, weekly 1, monthly 1$`, 'm'));
    expect(text.stdout).toMatch(new RegExp(`^  keep    ${ids[3]!.slice(0, 12)}  2026-02-28 23:30:00 \\+00:00  .*  weekly 3, monthly 2$`, 'm'));
    expect(text.stdout).toMatch(new RegExp(`^  keep    ${ids[10]!.slice(0, 12)}  .*  \\[keep, db\\]  last 2, tag keep$`, 'm'));
    expect(text.stdout).toMatch(new RegExp(`^  remove  ${ids[0]!.slice(0, 12)}  2025-11-15 12:00:00 \\+00:00  `, 'm'));
    expect(text.stdout).toMatch(/^Removed 6 snapshots\./m);
    expect(await held(repository)).toEqual([1, 2, 3, 5, 10, 11]);
  });

  test("--keep-* flags replace the job's policy: --keep-within and --keep-tag", async () => {
    // The job would keep 2 by its tag; the flags do not. Within 2d of 13 March 12:00 UTC: after 11 March 12:00: 10, 9, 8. Tag other: 7.
    const { job, repository } = await copy({ keepTags: ['keep'] });
    const json = parseJson(await cli(['forget', job, '--keep-within', '2d', '--keep-tag', 'other', '--time-zone', 'UTC', '--json']));
    expect(json.policy).toEqual({ keepWithin: '2d', keepTags: ['other'] });
    expect(json.groups[0].keep.map((k: { id: string; reasons: string[] }) => [ids.indexOf(k.id), k.reasons])).toEqual([
      [11, ['within 2d']],
      [10, ['within 2d']],
      [9, ['within 2d']],
      [8, ['within 2d']],
      [7, ['tag other']],
    ]);
    expect(await held(repository)).toEqual([7, 8, 9, 10, 11]);
    // Applying it again changes nothing.
    const again = parseJson(await cli(['forget', job, '--keep-within', '2d', '--keep-tag', 'other', '--time-zone', 'UTC', '--json']));
    expect(again.removed).toEqual([]);
    expect(await held(repository)).toEqual([7, 8, 9, 10, 11]);
  });

  test('forget <job> <snapshot ids...> removes exactly the snapshots named', async () => {
    const { job, repository } = await copy({ keepLast: 1 });
    const dry = parseJson(await cli(['forget', job, ids[3]!.slice(0, 10), ids[5]!, '--dry-run', '--json']));
    expect(dry.groups).toEqual([{ key: {}, keep: [], remove: [expect.objectContaining({ id: ids[5] }), expect.objectContaining({ id: ids[3] })] }]);
    expect(await held(repository)).toEqual(TIMES.map((_, i) => i));
    expectSuccess(await cli(['forget', job, ids[3]!.slice(0, 10), ids[5]!]));
    expect(await held(repository)).toEqual([0, 1, 2, 4, 6, 7, 8, 9, 10, 11]);
    expectCleanFailure(await cli(['forget', job, ids[3]!.slice(0, 10)]), 2, /No snapshot/);
  });
});
