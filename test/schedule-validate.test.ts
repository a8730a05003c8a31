import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { escapeRegExp, expectCleanFailure, expectSuccess, parseJson, runCli, useTempDir, writeJob } from './utils/index.js';

/*
 * The job file's `schedule`, `prune` and `check` through the real CLI: `cairn validate` accepts
 * them, and refuses (exit 2, before any I/O) what the schema or croner cannot read, naming the
 * path of each problem. `cairn schema` documents the keys.
 */

describe('schedules in job files', () => {
  test('validate accepts cron, every, runMissed, jitter, prune and check', async () => {
    const dir = await useTempDir();
    const job = await writeJob(dir, {
      source: join(dir, 'not-read.img'),
      extra: {
        schedule: { cron: '0 2 * * *', timeZone: 'Europe/Berlin', runMissed: true, jitter: '10m' },
        prune: { schedule: { every: '7d', jitter: '1h' }, repackThreshold: 20, maxRepackSize: '2G', maxWait: '1h30m' },
        check: { schedule: { cron: '0 0 4 L * *' }, readDataSubset: '5%' },
      },
    });
    const result = await runCli(['validate', job, '--json']);
    expectSuccess(result);
    expect(parseJson(result)).toEqual({ valid: true, job });
  });

  test('validate refuses, exit 2, every problem with its path', async () => {
    const dir = await useTempDir();
    const job = await writeJob(dir, {
      source: join(dir, 'not-read.img'),
      extra: {
        schedule: { cron: '0 2 * * * * 2026', timeZone: 'Europe/Berlin' },
        prune: { schedule: { every: '1h', jitter: '2h' }, maxRepackSize: 'much' },
        check: { schedule: { cron: '0 4 * * *', timeZone: 'Moon/Tranquility' }, readDataSubset: '9/8' },
      },
    });
    expectCleanFailure(
      await runCli(['validate', job]),
      2,
      new RegExp(`The job file ${escapeRegExp(job)} is invalid`),
      /\/schedule\/cron: "0 2 \* \* \* \* 2026" is not a cron expression of 5 fields \(minute hour day-of-month month day-of-week\), or 6 with seconds first/,
      /\/prune\/schedule\/jitter: must be shorter than the interval \(every 1h\)/,
      /\/prune\/maxRepackSize: must be a number of bytes/,
      /\/check\/schedule\/timeZone: "Moon\/Tranquility" is not a time zone this system knows/,
      /\/check\/readDataSubset: must be n\/m/,
    );
  });

  test('shapes the schema checks: exactly one key set, durations, unknown keys', async () => {
    const dir = await useTempDir();
    const both = await writeJob(dir, { source: join(dir, 'not-read.img'), extra: { schedule: { cron: '0 2 * * *', every: '1d' } } }, 'both.json');
    expectCleanFailure(await runCli(['validate', both]), 2, /\/schedule: give exactly one of "cron" \(e\.g\. "0 2 \* \* \*"\) and "every" \(e\.g\. "6h"\)/);
    const shapes = await writeJob(dir, { source: join(dir, 'not-read.img'), extra: { schedule: { every: '6 hours', runMissed: 'yes', at: '02:00' }, check: { readDataSubset: '5%' } } }, 'shapes.json');
    expectCleanFailure(
      await runCli(['validate', shapes]),
      2,
      /\/schedule\/every: must be a duration such as 30s/,
      /\/schedule\/runMissed: must be boolean/,
      /\/schedule: must NOT have additional property "at"/,
      /\/check: must have required property 'schedule'/,
    );
  });

  test('cairn schema describes the keys', async () => {
    const result = await runCli(['schema']);
    expectSuccess(result);
    const schema = parseJson<{ properties: Record<string, { properties: Record<string, unknown> }> }>(result);
    expect(Object.keys(schema.properties.schedule!.properties)).toEqual(['cron', 'every', 'timeZone', 'runMissed', 'jitter']);
    expect(Object.keys(schema.properties.prune!.properties)).toEqual(['schedule', 'repackThreshold', 'maxRepackSize', 'maxWait']);
    expect(Object.keys(schema.properties.check!.properties)).toEqual(['schedule', 'readDataSubset']);
  });
});
