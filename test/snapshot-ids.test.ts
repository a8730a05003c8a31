import { access, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  backup,
  escapeRegExp,
  expectCleanFailure,
  expectSuccess,
  init,
  makeVolume,
  parseJson,
  runCli,
  sameBytes,
  snapshots,
  tempDir,
  useSuiteScope,
  writeJob,
  type BackupSummary,
} from './utils/index.js';

/*
 * How a snapshot is named on the command line: `latest`, a full id, or a unique prefix of
 * at least 4 hex digits (lower case, as ids are printed). Anything else is refused with a
 * message that says what is accepted. Three snapshots of three different volumes, so that
 * each name can be told apart by what it restores.
 */

describe('snapshot ids and prefixes', () => {
  const scope = useSuiteScope();
  let dir: string;
  let job: string;
  const versions: string[] = [];
  const made: BackupSummary[] = [];

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-ids-');
    job = await writeJob(dir, { source: './disk.img' });
    for (let i = 0; i < 3; i++) {
      const { image } = await makeVolume(dir, `v${i}`, 16 * MiB, { seed: 111 + i, randomBytes: 512 * 1024, textBytes: 256 * 1024 });
      versions.push(image);
      await copyFile(image, join(dir, 'disk.img'));
      if (i === 0) await init(job);
      made.push(await backup(job));
    }
  });

  /** The shortest prefix, at least `min` digits long, that no other snapshot shares and that satisfies `accept`. */
  function uniquePrefix(id: string, min = 4, accept: (prefix: string) => boolean = () => true): string {
    for (let length = min; length <= id.length; length++) {
      const prefix = id.slice(0, length);
      if (made.every((m) => m.snapshot === id || !m.snapshot.startsWith(prefix)) && accept(prefix)) return prefix;
    }
    throw new Error(`no usable prefix of ${id}`);
  }

  const run = (args: string[]) => runCli(args, { env: PASSWORD_ENV });

  /** A refused restore created nothing. */
  async function expectNothingRestored(): Promise<void> {
    await expect(access(join(dir, 'never.img'))).rejects.toThrow(/ENOENT/);
  }

  test('a unique prefix of 4 or more hex digits names the snapshot for show and restore', async () => {
    for (const [i, snapshot] of made.entries()) {
      const prefix = uniquePrefix(snapshot.snapshot);
      const shown = await run(['show', job, prefix, '--json']);
      expectSuccess(shown);
      expect(parseJson(shown).id).toBe(snapshot.snapshot);
      const restored = join(dir, `restored-${i}.img`);
      const result = await run(['restore', job, prefix, '--to', restored]);
      expectSuccess(result);
      expect(await sameBytes(versions[i]!, restored), `${prefix} restores version ${i}`).toBe(true);
    }
    // The full id works as well.
    expectSuccess(await run(['show', job, made[0]!.snapshot]));
  });

  test('latest is the newest of several snapshots', async () => {
    expect((await snapshots(job)).map((s) => s.id)).toEqual(made.map((m) => m.snapshot));
    expect(parseJson(await run(['show', job, 'latest', '--json'])).id).toBe(made[2]!.snapshot);
    const restored = join(dir, 'restored-latest.img');
    expectSuccess(await run(['restore', job, 'latest', '--to', restored]));
    expect(await sameBytes(versions[2]!, restored)).toBe(true);
  });

  test('3 hex digits are refused (exit 2), the message naming the rule', async () => {
    const prefix = made[0]!.snapshot.slice(0, 3);
    for (const command of [['show', job, prefix], ['restore', job, prefix, '--to', join(dir, 'never.img')]]) {
      expectCleanFailure(await run(command), 2, new RegExp(`"?${prefix}"?`), /4 to 64 hex digits/);
    }
    await expectNothingRestored();
  });

  test('upper-case and non-hex names are refused clearly (exit 2)', async () => {
    // A prefix with a letter in it, so that upper case really differs.
    const lower = uniquePrefix(made[1]!.snapshot, 6, (p) => /[a-f]/.test(p));
    for (const name of [lower.toUpperCase(), 'lat3st', 'ghij', `${lower}-x`]) {
      for (const command of [['show', job, name], ['restore', job, name, '--to', join(dir, 'never.img')]]) {
        expectCleanFailure(await run(command), 2, new RegExp(escapeRegExp(name)), /not a snapshot id/, /latest/, /4 to 64 hex digits/);
      }
    }
    await expectNothingRestored();
  });

  test('a well-formed prefix that matches no snapshot is exit 2 with a message', async () => {
    let unknown = '0000';
    for (let n = 0; made.some((m) => m.snapshot.startsWith(unknown)); n++) unknown = n.toString(16).padStart(4, '0');
    for (const name of [unknown, `${unknown}abcd`]) {
      for (const command of [['show', job, name], ['restore', job, name, '--to', join(dir, 'never.img')]]) {
        expectCleanFailure(await run(command), 2, new RegExp(`No snapshot ${name}\\b`));
      }
    }
    await expectNothingRestored();
  });
});
