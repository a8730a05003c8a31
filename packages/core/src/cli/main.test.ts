import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from './main.js';
import { COMMANDS } from './commands/index.js';

const WORKSPACE = fileURLToPath(new URL('../../../../', import.meta.url));

/** Runs the CLI in this process with its own streams and working folder, as an embedding program would. */
async function cli(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  const sink = () => {
    const chunks: string[] = [];
    const stream = new Writable({ write: (chunk, _encoding, done) => (chunks.push(String(chunk)), done()) });
    return { stream, text: () => chunks.join('') };
  };
  const stdout = sink();
  const stderr = sink();
  const exitCode = await main(args, { stdout: stdout.stream, stderr: stderr.stream, env: { CAIRN_PLUGINS: join(WORKSPACE, 'plugins.json'), ...env }, cwd });
  return { exitCode, stdout: stdout.text(), stderr: stderr.text() };
}

describe('the CLI through its injected IO', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-cli-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('resolves relative paths against the working folder it is given, not the process', async () => {
    const job = { name: 'j', source: { type: 'volume', path: './disk.img' }, target: { type: 'local', path: './repo' }, password: { env: 'PW' } };
    await writeFile(join(dir, 'job.json'), JSON.stringify(job));
    expect(process.cwd()).not.toBe(dir);
    const result = await cli(['validate', 'job.json', '--json'], dir);
    expect(result).toEqual({ exitCode: 0, stdout: `${JSON.stringify({ valid: true, job: join(dir, 'job.json') }, null, 2)}\n`, stderr: '' });
    const missing = await cli(['validate', 'job.json'], WORKSPACE);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toBe(`cairn: Cannot read the job file ${join(WORKSPACE, 'job.json')}: ENOENT: no such file or directory, open '${join(WORKSPACE, 'job.json')}'\n`);
  });

  it('lists every command of the table in its help, on its own stdout', async () => {
    const result = await cli(['--help'], dir);
    expect(result.exitCode).toBe(0);
    for (const command of COMMANDS) expect(result.stdout).toContain(`cairn ${command.command}`);
    // yargs wraps the epilogue at the terminal's width.
    expect(result.stdout.replace(/\s+/g, ' ')).toContain('Exit codes: 0 ok, 1 failed, 2 bad usage or job file, 3 snapshot saved incomplete (backup --rescue met unreadable sectors, or a files job could not read some paths), 10 no repository, 11 locked, 12 wrong password, 13 damage found, 130 and 143 stopped by SIGINT and SIGTERM (locks released).');
    expect(result.stderr).toBe('');
  });

  it('reports bad usage with exit 2 and errors as JSON with --json', async () => {
    const unknown = await cli(['frobnicate'], dir);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toMatch(/^cairn: Unknown argument: frobnicate\nRun cairn --help for usage\.\n$/);
    const json = await cli(['validate', 'nowhere.json', '--json'], dir);
    expect(json.exitCode).toBe(2);
    expect(JSON.parse(json.stderr)).toEqual({ error: { code: 'CAIRN_JOB_INVALID', message: expect.stringContaining(join(dir, 'nowhere.json')) } });
  });

  it('refuses an unknown CAIRN_MEMORY with exit 2 before doing anything', async () => {
    const job = { name: 'j', source: { type: 'volume', path: './disk.img' }, target: { type: 'local', path: './repo' }, password: { env: 'PW' } };
    await writeFile(join(dir, 'job.json'), JSON.stringify(job));
    const result = await cli(['init', 'job.json'], dir, { CAIRN_MEMORY: 'lots', PW: 'pw' });
    expect(result).toEqual({ exitCode: 2, stdout: '', stderr: 'cairn: CAIRN_MEMORY must be "low" or "high", not "lots"\n' });
    expect(await readdir(dir)).toEqual(['job.json']);
  });

  it('applies the schema defaults: a job without compression gets zstd level 3', async () => {
    const schema = JSON.parse((await cli(['schema'], dir)).stdout);
    expect(schema.properties.compression.default).toEqual({ type: 'zstd', level: 3 });
  });
});
