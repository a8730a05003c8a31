import { copyFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  backup,
  flipByte,
  init,
  listPacks,
  makeVolume,
  parseJson,
  run,
  runCli,
  tempDir,
  useSuiteScope,
  writeJob,
  type BackupSummary,
  overwriteWithRandom,
} from './utils/index.js';

/*
 * `check --read-data` names every snapshot that damaged data affects, and only those.
 * Three snapshots: v0; v1 = v0 with 4 MiB rewritten; v2 = v0 with the same 4 MiB rewritten
 * differently. The first backup's pack holds chunks all three need; the second backup's
 * pack holds chunks only v1 needs.
 */

interface CheckJson {
  problems: Array<{ object: string; message: string; snapshots: string[] }>;
}

describe('check --read-data names every snapshot a damaged pack affects', () => {
  const scope = useSuiteScope();
  let dir: string;
  const made: BackupSummary[] = [];
  /** The packs each backup added, in order. */
  const packsAdded: string[][] = [];
  let copies = 0;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-check-damage-');
    const { image } = await makeVolume(dir, 'v0', 24 * MiB, { seed: 121, randomBytes: 4 * MiB, textBytes: 2 * MiB });
    const job = await writeJob(dir, { source: './disk.img', chunkSize: MiB });
    await init(job);
    const versions = [undefined, 'v1', 'v2'];
    for (const version of versions) {
      await copyFile(image, join(dir, 'disk.img'));
      if (version) await overwriteWithRandom(join(dir, 'disk.img'), 16 * MiB, 4 * MiB, version);
      const before = await listPacks(join(dir, 'repo'));
      made.push(await backup(job));
      packsAdded.push((await listPacks(join(dir, 'repo'))).filter((p) => !before.includes(p)));
    }
    expect(packsAdded.map((p) => p.length), 'each backup added one pack').toEqual([1, 1, 1]);
  });

  /** A copy of the repository with a byte flipped in the middle of `pack`, and a job for it. */
  async function damagedCopy(pack: string): Promise<string> {
    const name = `damaged-${++copies}`;
    await run('cp', ['-a', join(dir, 'repo'), join(dir, name)]);
    await flipByte(join(dir, name, pack), Math.floor((await stat(join(dir, name, pack))).size / 2));
    return writeJob(dir, { source: './disk.img', repository: `./${name}` }, `${name}.json`);
  }

  async function expectReport(job: string, pack: string, affected: BackupSummary[]): Promise<void> {
    const unaffected = made.filter((m) => !affected.includes(m));
    const text = await runCli(['check', job, '--read-data'], { env: PASSWORD_ENV });
    expect(text.exitCode, text.stdout + text.stderr).toBe(13);
    const damageLines = text.stdout.split('\n').filter((line) => line.startsWith('DAMAGE'));
    expect(damageLines, text.stdout).toHaveLength(1);
    expect(damageLines[0]).toContain(pack);
    for (const snapshot of affected) expect(damageLines[0], 'names an affected snapshot').toContain(snapshot.snapshot.slice(0, 12));
    for (const snapshot of unaffected) expect(text.stdout + text.stderr, 'names no unaffected snapshot').not.toContain(snapshot.snapshot.slice(0, 12));

    const json = await runCli(['check', job, '--read-data', '--json'], { env: PASSWORD_ENV });
    expect(json.exitCode, json.stderr).toBe(13);
    const { problems } = parseJson<CheckJson>(json);
    expect(problems).toHaveLength(1);
    expect(problems[0]!.object).toBe(pack);
    expect(problems[0]!.snapshots.sort()).toEqual(affected.map((m) => m.snapshot).sort());
  }

  test('damage in a pack all three snapshots need names all three (exit 13)', async () => {
    const pack = packsAdded[0]![0]!;
    await expectReport(await damagedCopy(pack), pack, made);
  });

  test('damage in a pack only one snapshot needs (v1, older than v2) names only that one', async () => {
    const pack = packsAdded[1]![0]!;
    await expectReport(await damagedCopy(pack), pack, [made[1]!]);
  });
});
