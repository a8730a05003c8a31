import { mkdir, readdir, writeFile } from 'node:fs/promises';
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
  tempDir,
  useSuiteScope,
  writeJob,
} from './utils/index.js';

/*
 * `cairn key add --new-password-file FILE`: the file is read relative to the current folder
 * (where the user typed the command, not the job file's folder), and its trailing newline is
 * not part of the password, as with `echo secret > file`.
 */

const NEW_PASSWORD = 'a second password, from a file';

describe('key add --new-password-file', () => {
  const scope = useSuiteScope();
  let dir: string;
  let job: string;
  let snapshot: string;
  /** The current folder of the CLI runs: not the job file's. */
  let cwd: string;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-keys-');
    await makeVolume(dir, 'disk', 16 * MiB, { seed: 131, randomBytes: 256 * 1024, textBytes: 256 * 1024 });
    job = await writeJob(dir, { source: './disk.img' });
    await init(job);
    snapshot = (await backup(job)).snapshot;
    cwd = join(dir, 'elsewhere');
    await mkdir(cwd);
  });

  const snapshotsWith = (password: string) => runCli(['snapshots', job, '--json'], { env: { CAIRN_PASSWORD: password } });

  test('adds a password that opens the repository; the old one still does; key list shows both', async () => {
    await writeFile(join(cwd, 'new-password.txt'), `${NEW_PASSWORD}\n`, { mode: 0o600 });
    const added = await runCli(['key', 'add', job, '--new-password-file', 'new-password.txt'], { env: PASSWORD_ENV, cwd });
    expectSuccess(added);
    const addedId = /^Added key ([0-9a-f]{12})\n$/.exec(added.stdout)?.[1];
    expect(addedId, added.stdout).toBeDefined();

    for (const password of [NEW_PASSWORD, PASSWORD_ENV.CAIRN_PASSWORD]) {
      const result = await snapshotsWith(password);
      expectSuccess(result);
      expect(parseJson<Array<{ id: string }>>(result).map((s) => s.id)).toEqual([snapshot]);
    }
    // The newline was stripped: with it, the password is a different one.
    expectCleanFailure(await runCli(['snapshots', job], { env: { CAIRN_PASSWORD: `${NEW_PASSWORD}\n` } }), 12, /wrong password/i);

    const keys = parseJson<Array<{ id: string; current: boolean }>>(await runCli(['key', 'list', job, '--json'], { env: { CAIRN_PASSWORD: NEW_PASSWORD } }));
    expect(keys).toHaveLength(2);
    expect(keys.map((k) => k.id).sort()).toEqual((await readdir(join(dir, 'repo/keys'))).sort());
    // Opened with the new password, the new key is the current one.
    expect(keys.filter((k) => k.current).map((k) => k.id.slice(0, 12))).toEqual([addedId]);
    const text = await runCli(['key', 'list', job], { env: PASSWORD_ENV });
    expectSuccess(text);
    expect(text.stdout.trim().split('\n')).toHaveLength(2);
  });

  test('a missing password file is exit 2 with a message naming it; no key is added', async () => {
    const before = (await readdir(join(dir, 'repo/keys'))).sort();
    const result = await runCli(['key', 'add', job, '--new-password-file', 'no-such-file.txt'], { env: PASSWORD_ENV, cwd });
    expectCleanFailure(result, 2, new RegExp(escapeRegExp(join(cwd, 'no-such-file.txt'))), /new password/);
    expect((await readdir(join(dir, 'repo/keys'))).sort()).toEqual(before);
  });
});
