import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createCore, type Core } from '../create-core.js';
import { JobFileError } from '../errors.js';
import { JobLoader } from './job-loader.js';
import { JobSchema } from './job-schema.js';

const WORKSPACE = fileURLToPath(new URL('../../../../', import.meta.url));
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

describe('JobLoader', () => {
  let dir: string;
  const cores: Core[] = [];
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-job-'));
  });
  afterEach(async () => {
    for (const core of cores.splice(0)) await core.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  async function load(job: object, plugins: string[] = [], prefix = ''): Promise<ReturnType<JobLoader['load']>> {
    await writeFile(join(dir, 'plugins.json'), JSON.stringify({ plugins: plugins.map((p) => join(WORKSPACE, 'packages', p)) }));
    await writeFile(join(dir, 'job.json'), prefix + JSON.stringify(job));
    const core = await createCore({ pluginsFile: join(dir, 'plugins.json'), logger: quiet, env: {}, cwd: dir });
    cores.push(core);
    return core.get(JobLoader).load('job.json');
  }

  const job = { name: 'j', source: { type: 'volume', path: 'disk.img' }, target: { type: 'local', path: 'repo' }, password: { env: 'PW' } };

  it('fills in the defaults the schemas declare: zstd level 3 when a plugin provides zstd, and the plugins\' own', async () => {
    const loaded = await load(job, ['source-volume', 'target-local', 'codec-zstd']);
    expect(loaded.config.compression).toEqual({ type: 'zstd', level: 3 });
    // `mode: used` is the volume plugin's default, from its own schema.
    expect(loaded.info).toEqual({ name: 'j', file: join(dir, 'job.json'), job: { ...job, source: { ...job.source, mode: 'used' }, compression: { type: 'zstd', level: 3 } } });
    expect(loaded.baseDir).toBe(dir);
    // What the job says wins over the default.
    expect((await load({ ...job, compression: { type: 'none' } }, ['source-volume', 'target-local', 'codec-zstd'])).config.compression).toEqual({ type: 'none' });
  });

  it('reads a job file saved with a UTF-8 byte order mark', async () => {
    const loaded = await load(job, ['source-volume', 'target-local'], '\uFEFF');
    expect(loaded.config.name).toBe('j');
  });

  it('gives no compression default without a plugin that provides it', async () => {
    const loaded = await load(job, ['source-volume', 'target-local']);
    expect(loaded.config.compression).toBeUndefined();
  });

  it('validates each job against the plugins it names: jobs of other kinds in one process, an unknown type refused', async () => {
    await load(job, ['source-volume', 'source-files', 'target-local', 'target-sftp', 'codec-zstd']);
    const schema = cores.at(-1)!.get(JobSchema);
    const volume = schema.validate({ ...job, source: { type: 'volume', path: 'disk.img', mode: 'sometimes' } });
    expect(volume.problems).toEqual(['/source/mode: must be one of "used", "exact", not "sometimes" (plugin cairn.source-volume)']);
    const files = schema.validate({ ...job, source: { type: 'files', paths: [] }, target: { type: 'sftp' } });
    expect(files.problems).toEqual([
      '/source/paths: must NOT have fewer than 1 items (plugin cairn.source-files)',
      "/target: must have required property 'host' (plugin cairn.target-sftp)",
      "/target: must have required property 'username' (plugin cairn.target-sftp)",
      "/target: must have required property 'path' (plugin cairn.target-sftp)",
    ]);
    expect(schema.validate({ ...job, target: { type: 'tape', path: 'x' } }).problems).toEqual(['/target/type: must be one of "local", "sftp", not "tape"']);
    expect(schema.validate(job)).toMatchObject({ problems: [], job: { source: { mode: 'used' }, compression: { type: 'zstd', level: 3 } } });
    // What `cairn schema` prints still holds every plugin's rules.
    expect(JSON.stringify(schema.schema)).toContain('"const":"sftp"');
  });

  it('refuses an invalid job with every problem, before any other I/O', async () => {
    const error = await load({ ...job, chunkSize: 1000, target: { type: 'local' } }, ['source-volume', 'target-local']).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(JobFileError);
    expect((error as Error).message).toContain('/chunkSize: must be one of 65536');
    expect((error as Error).message).toContain("/target: must have required property 'path' (plugin cairn.target-local)");
  });

  it('takes a retention policy, and refuses one with bad shapes, durations or zone names', async () => {
    const plugins = ['source-volume', 'target-local'];
    const retention = { keepLast: 3, keepDaily: 7, keepWeekly: 4, keepMonthly: 12, keepYearly: 2, keepHourly: 0, keepWithin: '1y6m', keepTags: ['keep'], timeZone: 'Europe/Berlin' };
    expect((await load({ ...job, retention }, plugins)).config.retention).toEqual(retention);
    const shapes = await load({ ...job, retention: { keepLast: -1, keepDaily: 1.5, keepWithin: '30 days', keepTags: ['a,b'], keepForever: true } }, plugins).catch((e: unknown) => e);
    expect(shapes).toBeInstanceOf(JobFileError);
    for (const problem of ['/retention/keepLast: must be >= 0', '/retention/keepDaily: must be integer', '/retention/keepWithin: must match pattern', '/retention/keepTags/0: must match pattern', '/retention: must NOT have additional property "keepForever"']) {
      expect((shapes as Error).message).toContain(problem);
    }
    const meaning = await load({ ...job, retention: { keepWithin: '1d1d', timeZone: 'Mars/Base' } }, plugins).catch((e: unknown) => e);
    expect(meaning).toBeInstanceOf(JobFileError);
    expect((meaning as Error).message).toMatch(/\/retention\/keepWithin: .*the unit d appears twice/);
    expect((meaning as Error).message).toMatch(/\/retention\/timeZone: "Mars\/Base" is not a time zone/);
  });
});
