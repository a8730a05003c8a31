import { appendFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { HISTORY_LIMIT, RunHistory } from './history.js';
import type { RunRecord } from '../state.js';

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const record = (n: number): RunRecord => ({ task: 'backup', result: 'success', started: new Date(n * 1000).toISOString(), finished: new Date(n * 1000 + 500).toISOString(), durationMs: 500, bytesAdded: n });

test('keeps the last runs per job, newest last, bounded; a torn line is skipped; names are safe file names', async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-history-'));
  const history = new RunHistory(dir);
  for (let n = 0; n < 2 * HISTORY_LIMIT + 5; n++) await history.append('../odd/name', record(n));
  const runs = await history.read('../odd/name');
  expect(runs.map((r) => r.bytesAdded)).toEqual(Array.from({ length: HISTORY_LIMIT }, (_, i) => HISTORY_LIMIT + 5 + i));
  // The name cannot climb out of the folder, nor hide as a dot file.
  const file = join(dir, 'history', '%2E.%2Fodd%2Fname.jsonl');
  expect((await readFile(file, 'utf8')).trim().split('\n').length).toBeLessThan(2 * HISTORY_LIMIT);
  await appendFile(file, '{"task":"backup","resu');
  await history.append('../odd/name', record(1000));
  expect((await history.read('../odd/name')).at(-1)!.bytesAdded).toBe(1000);
  expect(await history.read('never-ran')).toEqual([]);
});
