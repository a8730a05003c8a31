import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  backup,
  expectSuccess,
  init,
  makeVolume,
  runCli,
  tempDir,
  useSuiteScope,
  writeJob,
  type CliResult,
} from './utils/index.js';

/*
 * "On a terminal a progress bar with throughput and ETA is drawn on stderr; piped output
 * stays quiet." The commands run on a real pseudo-terminal (util-linux `script`), as at a
 * user's shell, and with their output piped, as in a script or cron job.
 */

interface Frame {
  percent: number;
  text: string;
}

/**
 * The progress bar's frames for `label` in what a terminal showed: each is drawn after a
 * carriage return, over the one before, with a percentage and an ETA.
 */
function progressFrames(screen: string, label: string): Frame[] {
  const frames: Frame[] = [];
  for (const match of screen.matchAll(new RegExp(`\\r(${label}\\b[^\\r\\n]*?(\\d{1,3})%[^\\r\\n]*\\bETA\\b[^\\r\\n]*)`, 'g'))) {
    frames.push({ percent: Number(match[2]), text: match[1]! });
  }
  return frames;
}

/** Asserts a bar was drawn and redrawn in place, and went from start to 100 %. */
function expectProgressBar(screen: string, label: string): void {
  const frames = progressFrames(screen, label);
  expect(frames.length, `a ${label} bar drawn and redrawn in:\n${JSON.stringify(screen)}`).toBeGreaterThanOrEqual(2);
  const percents = frames.map((f) => f.percent);
  expect(percents, 'never goes backwards').toEqual([...percents].sort((a, b) => a - b));
  expect(percents.at(-1)).toBe(100);
  // Throughput next to the bar: bytes done of the total, and a rate.
  expect(frames.at(-1)!.text).toMatch(/\d+(\.\d)? [KMG]?i?B \/ \d+(\.\d)? [KMG]?i?B\s+\d+(\.\d)? [KMG]?i?B\/s/);
}

/** What the terminal showed, with its line ends (\r\n) made plain: no bar may be left in it. */
function withoutProgress(screen: string): string {
  return screen.replaceAll('\r\n', '\n');
}

describe('progress on a terminal, silence when piped', () => {
  const scope = useSuiteScope();
  let dir: string;
  let job: string;
  const env = PASSWORD_ENV;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-terminal-');
    await makeVolume(dir, 'disk', 64 * MiB, { seed: 81, randomBytes: 6 * MiB, textBytes: 4 * MiB });
    job = await writeJob(dir, { source: './disk.img' });
    await init(job);
    await backup(job);
  });

  const commands: Array<[label: string, args: () => string[]]> = [
    ['backup', () => ['backup', job]],
    ['restore', () => ['restore', job, 'latest', '--to', join(dir, 'restored.img'), '--force']],
    ['check', () => ['check', job, '--read-data']],
  ];

  test.each(commands)('%s draws a progress bar with percentage and ETA on a terminal, redrawn over one line', async (label, args) => {
    const result = await runCli(args(), { env, terminal: true });
    expectSuccess(result);
    expectProgressBar(result.stdout, label);
    // The bar is finished with a line break, and the summary is printed on a line of its own.
    const lines = withoutProgress(result.stdout).split('\n');
    expect(lines.at(-1)).toBe('');
    expect(lines.at(-2)).toMatch(/^(Snapshot [0-9a-f]{12} saved|Restored snapshot|No problems found)/);
  });

  test.each(commands)('%s draws its bar on stderr: stdout gets the summary only', async (label, args) => {
    const stdoutFile = join(dir, `${label}-stdout.txt`);
    const result = await runCli(args(), { env, terminal: { stdoutFile } });
    expectSuccess(result);
    expectProgressBar(result.stdout, label);
    const stdout = await readFile(stdoutFile, 'utf8');
    expect(stdout).not.toMatch(/\r|ETA|%/);
    expect(stdout.trim()).not.toBe('');
  });

  test.each(commands)('%s piped prints no progress at all: stderr stays empty', async (label, args) => {
    const result = await runCli(args(), { env });
    expectSuccess(result);
    expect(result.stderr).toBe('');
    expect(result.stdout).not.toMatch(/\r|ETA/);
    expect(result.stdout).not.toContain(`${label} [`);
  });

  test.each(commands)('%s --json on a terminal never draws the bar: the terminal shows the JSON only', async (_label, args) => {
    const result: CliResult = await runCli([...args(), '--json'], { env, terminal: true });
    expectSuccess(result);
    const screen = withoutProgress(result.stdout);
    expect(screen).not.toMatch(/\r|ETA|\x1b\[/);
    expect(() => JSON.parse(screen)).not.toThrow();
  });
});
