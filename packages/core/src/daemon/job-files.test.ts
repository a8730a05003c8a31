import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, onTestFinished, test } from 'vitest';
import { JobSet, listJobFiles } from './job-files.js';
import type { LoadedJob } from '../job/job-loader.js';

/** Loads `{ "name": … }` files; anything else is invalid, as a job loader would say. */
async function load(file: string): Promise<LoadedJob> {
  const { readFile } = await import('node:fs/promises');
  const job = JSON.parse(await readFile(file, 'utf8'));
  if (typeof job.name !== 'string') throw new Error(`The job file ${file} is invalid`);
  return { info: { name: job.name, file, job }, config: job, baseDir: '/' };
}

async function tempFolder(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-jobs-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe('job files of a daemon', () => {
  test('folders give their *.json files, sorted; files are taken as named', async () => {
    const dir = await tempFolder();
    await mkdir(join(dir, 'jobs'));
    for (const name of ['b.json', 'a.json', 'notes.txt', '.hidden.json']) await writeFile(join(dir, 'jobs', name), '{}');
    await writeFile(join(dir, 'extra.json'), '{}');
    expect(await listJobFiles(['jobs', 'extra.json'], dir)).toEqual([join(dir, 'jobs/a.json'), join(dir, 'jobs/b.json'), join(dir, 'extra.json')]);
    await expect(listJobFiles(['missing'], dir)).rejects.toThrow(/no such file or folder/);
  });

  test('an invalid file is reported and its previous valid version kept; a duplicate name is refused', async () => {
    const dir = await tempFolder();
    const [a, b] = [join(dir, 'a.json'), join(dir, 'b.json')];
    await writeFile(a, JSON.stringify({ name: 'a', v: 1 }));
    await writeFile(b, JSON.stringify({ name: 'a' }));
    const set = new JobSet(load);
    const first = await set.reload([a, b], new Date());
    expect([...first.jobs.keys()]).toEqual(['a']);
    expect(first.problems).toEqual([{ file: b, message: expect.stringContaining(`the job name "a" is taken by ${a}`), time: expect.any(String) }]);

    await writeFile(a, '{ "oops": true }');
    const second = await set.reload([a], new Date());
    expect(second.jobs.get('a')?.info.job).toEqual({ name: 'a', v: 1 });
    expect(second.problems[0]?.message).toMatch(/invalid\n\(its previous valid version keeps running\)/);
  });
});
