import { describe, expect, it } from 'vitest';
import {
  applyRetention,
  describePolicy,
  groupSnapshots,
  isEmptyPolicy,
  parseGroupBy,
  parseRetentionDuration,
  retentionProblems,
  type RetentionPolicy,
} from './policy.js';

/*
 * Every expected kept set here is worked out by hand, in the comments next to it, from the
 * calendar (1 January 2026 is a Thursday) and the zones' offsets (Berlin UTC+1, UTC+2 from
 * 29 March to 25 October 2026; Kolkata UTC+5:30; Los Angeles UTC-7 in summer).
 */

interface Snap {
  id: string;
  time: string;
  tags?: string[];
}

/** Snapshots named by `id`, at the given UTC times. */
function snaps(times: Record<string, string>, tags: Record<string, string[]> = {}): Snap[] {
  return Object.entries(times).map(([id, time]) => ({ id, time, ...(tags[id] && { tags: tags[id] }) }));
}

/** The decision as `{ id: reasons }` for the kept, and the ids removed (both newest first). */
function decide(list: Snap[], policy: RetentionPolicy, timeZone = 'UTC') {
  const { keep, remove } = applyRetention(list, policy, { timeZone });
  return { keep: Object.fromEntries(keep.map((k) => [k.snapshot.id, k.reasons])), kept: keep.map((k) => k.snapshot.id), remove: remove.map((r) => r.id) };
}

describe('keepLast', () => {
  const list = snaps({ a: '2026-05-01T10:00:00Z', b: '2026-05-02T10:00:00Z', c: '2026-05-03T10:00:00Z', d: '2026-05-04T10:00:00Z', e: '2026-05-05T10:00:00Z' });

  it('keeps the N newest, whatever the input order', () => {
    expect(decide(list, { keepLast: 3 })).toEqual({ keep: { e: ['last 1'], d: ['last 2'], c: ['last 3'] }, kept: ['e', 'd', 'c'], remove: ['b', 'a'] });
    expect(decide([...list].reverse(), { keepLast: 3 }).kept).toEqual(['e', 'd', 'c']);
  });

  it('keeps everything when N is at least the number of snapshots, and handles none', () => {
    expect(decide(list, { keepLast: 9 }).remove).toEqual([]);
    expect(decide([], { keepLast: 1 })).toEqual({ keep: {}, kept: [], remove: [] });
  });

  it('breaks ties in time by id, so the result is stable', () => {
    const tied = snaps({ x1: '2026-05-01T10:00:00Z', x2: '2026-05-01T10:00:00Z' });
    expect(decide(tied, { keepLast: 1 }).kept).toEqual(['x2']);
    expect(decide([...tied].reverse(), { keepLast: 1 }).kept).toEqual(['x2']);
  });
});

describe('calendar rules in UTC', () => {
  it('keepDaily keeps the newest snapshot of each of the N newest days that have one', () => {
    const list = snaps({
      s1: '2026-05-01T08:00:00Z',
      s2: '2026-05-01T20:00:00Z',
      s3: '2026-05-02T09:00:00Z',
      s4: '2026-05-03T01:00:00Z',
      s5: '2026-05-03T23:00:00Z',
      s6: '2026-05-04T12:00:00Z',
    });
    // Days 4, 3 and 2 May; the newest of each: s6, s5, s3.
    expect(decide(list, { keepDaily: 3 })).toEqual({ keep: { s6: ['daily 1'], s5: ['daily 2'], s3: ['daily 3'] }, kept: ['s6', 's5', 's3'], remove: ['s4', 's2', 's1'] });
    // Days without snapshots do not count: 10 days asked, 4 have snapshots.
    expect(decide(list, { keepDaily: 10 }).kept).toEqual(['s6', 's5', 's3', 's2']);
  });

  /*
   * Ten snapshots at 12:00 UTC (S08 at 18:00), newest first:
   *   S10 Thu 5 Mar (W10)   S09 Wed 4 Mar (W10)   S08 Tue 3 Mar 18:00 (W10)   S07 Tue 3 Mar (W10)
   *   S06 Mon 2 Mar (W10)   S05 Sun 1 Mar (W09)   S04 Fri 27 Feb (W09)        S03 Mon 2 Feb (W06)
   *   S02 Tue 20 Jan (W04)  S01 Mon 5 Jan (W02)
   */
  const year = snaps({
    S01: '2026-01-05T12:00:00Z',
    S02: '2026-01-20T12:00:00Z',
    S03: '2026-02-02T12:00:00Z',
    S04: '2026-02-27T12:00:00Z',
    S05: '2026-03-01T12:00:00Z',
    S06: '2026-03-02T12:00:00Z',
    S07: '2026-03-03T12:00:00Z',
    S08: '2026-03-03T18:00:00Z',
    S09: '2026-03-04T12:00:00Z',
    S10: '2026-03-05T12:00:00Z',
  });

  it('combines rules: each kept snapshot lists every rule that kept it', () => {
    // last: S10, S09. daily: S10 (5th), S09 (4th), S08 (3rd, the newer of 3 March).
    // weekly: S10 (W10), then S05 (W09; S09-S06 share W10). monthly: S10 (March), S04 (February), S02 (January).
    // yearly: S10.
    expect(decide(year, { keepLast: 2, keepDaily: 3, keepWeekly: 2, keepMonthly: 3, keepYearly: 1 })).toEqual({
      keep: {
        S10: ['last 1', 'daily 1', 'weekly 1', 'monthly 1', 'yearly 1'],
        S09: ['last 2', 'daily 2'],
        S08: ['daily 3'],
        S05: ['weekly 2'],
        S04: ['monthly 2'],
        S02: ['monthly 3'],
      },
      kept: ['S10', 'S09', 'S08', 'S05', 'S04', 'S02'],
      remove: ['S07', 'S06', 'S03', 'S01'],
    });
  });

  it('keepWeekly counts ISO weeks (Monday to Sunday)', () => {
    // W10: S10; W09: S05 (Sunday 1 March, newer than Friday S04); W06: S03; W04: S02; W02: S01.
    expect(decide(year, { keepWeekly: 4 }).kept).toEqual(['S10', 'S05', 'S03', 'S02']);
  });

  it('keepHourly counts wall-clock hours', () => {
    const list = snaps({ h1: '2026-05-01T10:05:00Z', h2: '2026-05-01T10:55:00Z', h3: '2026-05-01T11:00:00Z', h4: '2026-05-01T13:30:00Z' });
    expect(decide(list, { keepHourly: 2 })).toMatchObject({ kept: ['h4', 'h3'], remove: ['h2', 'h1'] });
    expect(decide(list, { keepHourly: 3 })).toMatchObject({ keep: { h4: ['hourly 1'], h3: ['hourly 2'], h2: ['hourly 3'] }, remove: ['h1'] });
  });

  it('keepYearly keeps the newest of each year', () => {
    const list = snaps({ a: '2024-03-01T00:00:00Z', b: '2024-11-30T00:00:00Z', c: '2025-06-01T00:00:00Z', d: '2026-01-01T00:00:00Z', e: '2026-02-01T00:00:00Z' });
    expect(decide(list, { keepYearly: 5 })).toEqual({ keep: { e: ['yearly 1'], c: ['yearly 2'], b: ['yearly 3'] }, kept: ['e', 'c', 'b'], remove: ['d', 'a'] });
  });

  it('a rule of 0 is no rule', () => {
    expect(decide(year, { keepLast: 1, keepDaily: 0 })).toMatchObject({ kept: ['S10'] });
  });
});

describe('keepWithin', () => {
  const year = snaps({
    S03: '2026-02-02T12:00:00Z',
    S04: '2026-02-27T12:00:00Z',
    S05: '2026-03-01T12:00:00Z',
    S06: '2026-03-02T12:00:00Z',
    S07: '2026-03-03T12:00:00Z',
    S10: '2026-03-05T12:00:00Z',
  });

  it('keeps what is strictly less than the duration older than the newest snapshot (not the clock)', () => {
    // Newest: 5 March 12:00. 3d: after 2 March 12:00, so S06, exactly 3 days older, goes (restic's rule).
    expect(decide(year, { keepWithin: '3d' })).toEqual({ keep: { S10: ['within 3d'], S07: ['within 3d'] }, kept: ['S10', 'S07'], remove: ['S06', 'S05', 'S04', 'S03'] });
    // 1w = 7 days: after 26 February 12:00.
    expect(decide(year, { keepWithin: '1w' }).kept).toEqual(['S10', 'S07', 'S06', 'S05', 'S04']);
    // 1m: after 5 February 12:00. 1m3d: after 2 February 12:00, S03's own time. 1m4d: after 1 February.
    expect(decide(year, { keepWithin: '1m' }).remove).toEqual(['S03']);
    expect(decide(year, { keepWithin: '1m3d' }).remove).toEqual(['S03']);
    expect(decide(year, { keepWithin: '1m4d' }).remove).toEqual([]);
    // Hours: 72h is 3 days in UTC.
    expect(decide(year, { keepWithin: '72h' }).kept).toEqual(['S10', 'S07']);
    expect(decide(year, { keepWithin: '71h' }).kept).toEqual(['S10', 'S07']);
    expect(decide(year, { keepWithin: '49h' }).kept).toEqual(['S10', 'S07']);
    expect(decide(year, { keepWithin: '48h' }).kept).toEqual(['S10']);
  });

  it('months are calendar months, normalised like Go: 31 March minus 1m is 3 March', () => {
    const list = snaps({ a: '2026-03-02T12:00:00Z', b: '2026-03-03T12:00:00Z', c: '2026-03-03T13:00:00Z', d: '2026-03-31T12:00:00Z' });
    expect(decide(list, { keepWithin: '1m' }).kept).toEqual(['d', 'c']);
  });

  it('a day is a calendar day in the zone: across the spring DST change in Berlin it is 23 hours', () => {
    // Newest: 29 March 2026 12:00 CEST (10:00 UTC). 1d back on Berlin's calendar: 28 March 12:00 CET = 11:00 UTC.
    const list = snaps({ old: '2026-03-28T10:30:00Z', new: '2026-03-29T10:00:00Z' });
    expect(decide(list, { keepWithin: '1d' }, 'Europe/Berlin').kept).toEqual(['new']);
    // In UTC the cutoff is 28 March 10:00, and 10:30 is after it.
    expect(decide(list, { keepWithin: '1d' }, 'UTC').kept).toEqual(['new', 'old']);
  });

  it('adds its reason to those of other rules', () => {
    expect(decide(year, { keepLast: 1, keepWithin: '3d' }).keep).toEqual({ S10: ['last 1', 'within 3d'], S07: ['within 3d'] });
  });
});

describe('keepTags', () => {
  const list = snaps(
    { a: '2026-05-01T10:00:00Z', b: '2026-05-02T10:00:00Z', c: '2026-05-03T10:00:00Z', d: '2026-05-04T10:00:00Z' },
    { a: ['keep', 'x'], b: ['monthly'], c: ['x'] },
  );

  it('keeps every snapshot holding one of the tags, without counting', () => {
    expect(decide(list, { keepLast: 1, keepTags: ['keep'] })).toEqual({ keep: { d: ['last 1'], a: ['tag keep'] }, kept: ['d', 'a'], remove: ['c', 'b'] });
    expect(decide(list, { keepTags: ['x', 'monthly'] })).toEqual({ keep: { c: ['tag x'], b: ['tag monthly'], a: ['tag x'] }, kept: ['c', 'b', 'a'], remove: ['d'] });
    expect(decide(list, { keepTags: ['nothing'] }).remove).toEqual(['d', 'c', 'b', 'a']);
  });
});

describe('time zones', () => {
  it('a snapshot at 23:30 UTC belongs to the next day in Berlin', () => {
    // a: 10 June 14:00 Berlin; b: 10 June 23:00; c: 11 June 01:30; d: 11 June 12:00.
    const list = snaps({ a: '2026-06-10T12:00:00Z', b: '2026-06-10T21:00:00Z', c: '2026-06-10T23:30:00Z', d: '2026-06-11T10:00:00Z' });
    // UTC: 11 June has d, 10 June's newest is c.
    expect(decide(list, { keepDaily: 2 }, 'UTC')).toMatchObject({ kept: ['d', 'c'], remove: ['b', 'a'] });
    // Berlin: c is on 11 June with d; 10 June's newest is b.
    expect(decide(list, { keepDaily: 2 }, 'Europe/Berlin')).toMatchObject({ keep: { d: ['daily 1'], b: ['daily 2'] }, remove: ['c', 'a'] });
    // Los Angeles (UTC-7): a 05:00, b 14:00, c 16:30 on 10 June; d 03:00 on 11 June.
    expect(decide(list, { keepDaily: 2 }, 'America/Los_Angeles')).toMatchObject({ kept: ['d', 'c'], remove: ['b', 'a'] });
  });

  it('the Sunday→Monday week boundary moves with the zone', () => {
    // Sunday 14 June 2026 ends ISO week 24. w3 is Sunday 22:30 UTC, Monday 00:30 (week 25) in Berlin.
    const list = snaps({ w1: '2026-06-08T06:00:00Z', w2: '2026-06-14T20:00:00Z', w3: '2026-06-14T22:30:00Z', w4: '2026-06-16T10:00:00Z' });
    expect(decide(list, { keepWeekly: 2 }, 'UTC')).toMatchObject({ kept: ['w4', 'w3'], remove: ['w2', 'w1'] });
    expect(decide(list, { keepWeekly: 2 }, 'Europe/Berlin')).toMatchObject({ keep: { w4: ['weekly 1'], w2: ['weekly 2'] }, remove: ['w3', 'w1'] });
  });

  it('ISO weeks across the year end: 2026 has a week 53 that ends on 3 January 2027', () => {
    // y1 Sun 27 Dec (2026-W52), y2 Mon 28 Dec (W53), y3 Sun 3 Jan 2027 (2026-W53), y4 Mon 4 Jan (2027-W01).
    const list = snaps({ y1: '2026-12-27T12:00:00Z', y2: '2026-12-28T12:00:00Z', y3: '2027-01-03T12:00:00Z', y4: '2027-01-04T12:00:00Z' });
    expect(decide(list, { keepWeekly: 3 })).toEqual({ keep: { y4: ['weekly 1'], y3: ['weekly 2'], y1: ['weekly 3'] }, kept: ['y4', 'y3', 'y1'], remove: ['y2'] });
    // Months and years go by the calendar: January 2027 is y4 (y3 shares it), December 2026 is y2.
    expect(decide(list, { keepMonthly: 2 })).toMatchObject({ kept: ['y4', 'y2'], remove: ['y3', 'y1'] });
    expect(decide(list, { keepYearly: 2 })).toMatchObject({ kept: ['y4', 'y2'] });
  });

  it('a December Monday can be in week 1 of the next year (30 December 2024 is 2025-W01)', () => {
    // Sun 29 Dec 2024 (2024-W52), Mon 30 Dec 2024 (2025-W01), Sun 5 Jan 2025 (2025-W01), Mon 6 Jan (2025-W02).
    const list = snaps({ p: '2024-12-29T12:00:00Z', q: '2024-12-30T12:00:00Z', r: '2025-01-05T12:00:00Z', s: '2025-01-06T12:00:00Z' });
    // q shares week 2025-W01 with r, the newer one; a bucket by calendar year and week number would keep it.
    expect(decide(list, { keepWeekly: 3 })).toMatchObject({ kept: ['s', 'r', 'p'], remove: ['q'] });
  });

  it('the week-53 year 2020/2021 as well', () => {
    // Thu 31 Dec 2020 and Sun 3 Jan 2021 are both 2020-W53; Mon 4 Jan 2021 is 2021-W01.
    const list = snaps({ a: '2020-12-24T12:00:00Z', b: '2020-12-31T12:00:00Z', c: '2021-01-03T12:00:00Z', d: '2021-01-04T12:00:00Z' });
    expect(decide(list, { keepWeekly: 9 })).toMatchObject({ kept: ['d', 'c', 'a'], remove: ['b'] });
  });

  it('month boundaries move with the zone, DST included', () => {
    // m1: 31 Jan 23:30 UTC = 1 Feb 00:30 CET. m3: 31 Mar 22:30 UTC = 1 Apr 00:30 CEST (summer time since 29 March).
    const list = snaps({ m0: '2026-01-15T12:00:00Z', m1: '2026-01-31T23:30:00Z', m2: '2026-02-20T12:00:00Z', m3: '2026-03-31T22:30:00Z', m4: '2026-04-10T12:00:00Z' });
    // UTC: April m4, March m3, February m2.
    expect(decide(list, { keepMonthly: 3 }, 'UTC')).toMatchObject({ kept: ['m4', 'm3', 'm2'], remove: ['m1', 'm0'] });
    // Berlin: April m4 (m3 too), February m2 (m1 too), January m0.
    expect(decide(list, { keepMonthly: 3 }, 'Europe/Berlin')).toMatchObject({ keep: { m4: ['monthly 1'], m2: ['monthly 2'], m0: ['monthly 3'] }, remove: ['m3', 'm1'] });
  });

  it('the year boundary: New Year in Berlin an hour before UTC', () => {
    const list = snaps({ a: '2025-12-31T12:00:00Z', b: '2025-12-31T23:30:00Z', c: '2026-01-01T12:00:00Z' });
    expect(decide(list, { keepYearly: 2 }, 'UTC')).toMatchObject({ kept: ['c', 'b'], remove: ['a'] });
    expect(decide(list, { keepYearly: 2 }, 'Europe/Berlin')).toMatchObject({ kept: ['c', 'a'], remove: ['b'] });
  });

  it('hours in a half-hour zone: Kolkata is UTC+5:30', () => {
    // h1 15:50, h2 16:10, h3 16:20 in Kolkata; all three in hour 10 UTC.
    const list = snaps({ h1: '2026-06-01T10:20:00Z', h2: '2026-06-01T10:40:00Z', h3: '2026-06-01T10:50:00Z' });
    expect(decide(list, { keepHourly: 2 }, 'UTC')).toMatchObject({ kept: ['h3'], remove: ['h2', 'h1'] });
    expect(decide(list, { keepHourly: 2 }, 'Asia/Kolkata')).toMatchObject({ kept: ['h3', 'h1'], remove: ['h2'] });
  });

  it('the hour repeated when clocks go back is one wall-clock hour (as in restic)', () => {
    // 25 October 2026, Berlin: 00:30 UTC is 02:30 CEST, 01:30 UTC is 02:30 CET, 02:30 UTC is 03:30 CET.
    const list = snaps({ a: '2026-10-25T00:30:00Z', b: '2026-10-25T01:30:00Z', c: '2026-10-25T02:30:00Z' });
    expect(decide(list, { keepHourly: 3 }, 'Europe/Berlin')).toMatchObject({ kept: ['c', 'b'], remove: ['a'] });
    expect(decide(list, { keepHourly: 3 }, 'UTC')).toMatchObject({ kept: ['c', 'b', 'a'], remove: [] });
  });

  it('uses the local zone when none is given', () => {
    const saved = process.env.TZ;
    try {
      process.env.TZ = 'Europe/Berlin';
      const list = snaps({ b: '2026-06-10T21:00:00Z', c: '2026-06-10T23:30:00Z', d: '2026-06-11T10:00:00Z' });
      expect(applyRetention(list, { keepDaily: 2 }).keep.map((k) => k.snapshot.id)).toEqual(['d', 'b']);
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });
});

describe('odd input', () => {
  it('keeps a snapshot whose time cannot be read, and says why', () => {
    const list = [...snaps({ a: '2026-05-01T10:00:00Z', b: '2026-05-02T10:00:00Z' }), { id: 'z', time: 'yesterday' }];
    expect(decide(list, { keepLast: 1 })).toEqual({ keep: { b: ['last 1'], z: ['time unreadable'] }, kept: ['b', 'z'], remove: ['a'] });
  });

  it('takes Date objects and times with offsets', () => {
    const list = [
      { id: 'a', time: new Date('2026-05-01T10:00:00Z') },
      { id: 'b', time: '2026-05-01T12:30:00+02:00' }, // 10:30 UTC
    ];
    expect(applyRetention(list, { keepLast: 1 }, { timeZone: 'UTC' }).keep.map((k) => k.snapshot.id)).toEqual(['b']);
  });
});

describe('durations', () => {
  it.each([
    ['30d', { years: 0, months: 0, days: 30, hours: 0 }],
    ['1y6m', { years: 1, months: 6, days: 0, hours: 0 }],
    ['2w', { years: 0, months: 0, days: 14, hours: 0 }],
    ['1w2d', { years: 0, months: 0, days: 9, hours: 0 }],
    ['12h', { years: 0, months: 0, days: 0, hours: 12 }],
    ['1y2m3w4d5h', { years: 1, months: 2, days: 25, hours: 5 }],
    ['6m1y', { years: 1, months: 6, days: 0, hours: 0 }],
  ])('%s', (text, expected) => {
    expect(parseRetentionDuration(text)).toEqual(expected);
  });

  it.each(['', '30', 'd', '1d1d', '0d', '0y0m', '1x', '1.5d', ' 1d', '-1d', '1D', '1 d', '99999999999d'])('refuses %j', (text) => {
    expect(() => parseRetentionDuration(text)).toThrow(RangeError);
  });
});

describe('policies', () => {
  it('is empty with no rule, or only zero counts and no tags', () => {
    expect(isEmptyPolicy({})).toBe(true);
    expect(isEmptyPolicy({ keepLast: 0, keepDaily: 0, keepTags: [] })).toBe(true);
    expect(isEmptyPolicy({ keepLast: 1 })).toBe(false);
    expect(isEmptyPolicy({ keepWithin: '1d' })).toBe(false);
    expect(isEmptyPolicy({ keepTags: ['a'] })).toBe(false);
  });

  it('describes itself', () => {
    expect(describePolicy({ keepLast: 3, keepDaily: 7, keepWithin: '30d', keepTags: ['a', 'b'] })).toBe('keep last 3, daily 7, within 30d, tags a, b');
  });

  it('names what is wrong with settings the schema cannot check', () => {
    expect(retentionProblems({ keepLast: 2, keepWithin: '30d', keepTags: ['a'], timeZone: 'Europe/Berlin' })).toEqual([]);
    const problems = retentionProblems({ keepLast: 1.5, keepWithin: '1d1d', keepTags: ['a,b', ''], timeZone: 'Mars/Base' });
    expect(problems).toHaveLength(5);
    expect(problems.join('\n')).toMatch(/keepLast: must be a whole number/);
    expect(problems.join('\n')).toMatch(/keepWithin: .*the unit d appears twice/);
    expect(problems.join('\n')).toMatch(/keepTags: "a,b" holds a comma/);
    expect(problems.join('\n')).toMatch(/keepTags: a tag must not be empty/);
    expect(problems.join('\n')).toMatch(/timeZone: "Mars\/Base" is not a time zone/);
  });
});

describe('groups', () => {
  it('parses --group-by', () => {
    expect(parseGroupBy('host,job')).toEqual(['host', 'job']);
    expect(parseGroupBy('job, host')).toEqual(['host', 'job']);
    expect(parseGroupBy('tags')).toEqual(['tags']);
    expect(parseGroupBy('')).toEqual([]);
    expect(parseGroupBy('paths,host')).toEqual(['host', 'paths']);
    expect(() => parseGroupBy('host,path')).toThrow(/"path" is not something to group by/);
  });

  it('splits snapshots by the fields asked for, tags as a set', () => {
    const list = [
      { id: '1', host: 'b', job: 'sys', tags: ['x', 'y'] },
      { id: '2', host: 'a', job: 'sys', tags: ['y', 'x'] },
      { id: '3', host: 'a', job: 'home', tags: [] },
      { id: '4', host: 'a', job: 'sys' },
    ];
    const facts = (s: (typeof list)[number]) => s;
    const ids = (by: ReturnType<typeof parseGroupBy>) => groupSnapshots(list, by, facts).map((g) => [g.key, g.snapshots.map((s) => s.id)]);
    expect(ids(['host', 'job'])).toEqual([
      [{ host: 'a', job: 'home' }, ['3']],
      [{ host: 'a', job: 'sys' }, ['2', '4']],
      [{ host: 'b', job: 'sys' }, ['1']],
    ]);
    expect(ids(['tags'])).toEqual([
      [{ tags: [] }, ['3', '4']],
      [{ tags: ['x', 'y'] }, ['1', '2']],
    ]);
    expect(ids([])).toEqual([[{}, ['1', '2', '3', '4']]]);
  });

  it('groups by paths as a set: a job whose paths changed splits in two histories', () => {
    const list = [
      { id: '1', host: 'a', job: 'home', paths: ['/home/u', '/etc'] },
      { id: '2', host: 'a', job: 'home', paths: ['/etc', '/home/u'] },
      { id: '3', host: 'a', job: 'home', paths: ['/home/u'] },
    ];
    const ids = (by: ReturnType<typeof parseGroupBy>) => groupSnapshots(list, by, (s) => s).map((g) => [g.key, g.snapshots.map((s) => s.id)]);
    expect(ids(['host', 'job'])).toEqual([[{ host: 'a', job: 'home' }, ['1', '2', '3']]]);
    expect(ids(['host', 'job', 'paths'])).toEqual([
      [{ host: 'a', job: 'home', paths: ['/etc', '/home/u'] }, ['1', '2']],
      [{ host: 'a', job: 'home', paths: ['/home/u'] }, ['3']],
    ]);
  });
});
