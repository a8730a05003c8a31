import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContainerModule } from '../vendor.js';
import { createCore, type Core } from '../create-core.js';
import { Clock, NotifierRegistry, SourceRegistry, TargetRegistry, type Logger } from '../services.js';
import { EngineHooks, createBackupRunHooks, type BackupRun } from '../hooks.js';
import { HookRunner } from '../hook-runner.js';
import { SourceError } from '../errors.js';
import { MemoryTarget, sharedView } from '../testing/memory-target.js';
import { memorySource } from '../testing/memory-source.js';
import type { LoadedJob } from '../job/job-loader.js';
import type { Notification } from '../notify.js';
import type { SnapshotManifest } from '../repository/snapshot.js';
import { InitOperation } from '../operations/init.js';
import { BackupOperation } from '../operations/backup.js';
import { JobRuns } from '../operations/job-runs.js';

/*
 * The notifications every backup sends, through the real BackupOperation (a memory source and
 * target stand in for the plugins) and a notifier type that records what it gets.
 */

const IMAGE = randomBytes(200_000);


describe('backup notifications', () => {
  let dir: string;
  let core: Core;
  let sent: Notification[];
  let logged: string[];
  const clock = { time: new Date('2026-12-01T02:00:00.000Z'), now: () => clock.time };
  const config = { name: 'ops', source: { type: 'memory' }, target: { type: 'memory' }, password: { env: 'PW' }, notify: [{ type: 'recorder', on: ['start', 'success', 'warning', 'failure'] }] };
  const job: LoadedJob = { info: { name: 'ops', file: '/jobs/ops.json', job: config }, config: config as LoadedJob['config'], baseDir: '/jobs' };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-notify-ops-'));
    await writeFile(join(dir, 'plugins.json'), JSON.stringify({ plugins: [] }));
    sent = [];
    logged = [];
    const logger: Logger = { debug() {}, info() {}, warn: (m) => logged.push(`warn ${m}`), error: (m) => logged.push(`error ${m}`) };
    const testClock = new ContainerModule(({ rebind }) => void rebind(Clock).toConstantValue(clock));
    core = await createCore({ pluginsFile: join(dir, 'plugins.json'), logger, env: { PW: 'pw' }, cwd: dir, modules: [testClock] });
    const target = new MemoryTarget();
    core.get<TargetRegistry>(TargetRegistry).register('memory', { create: async () => sharedView(target) });
    core.get<SourceRegistry>(SourceRegistry).register('memory', { open: async () => memorySource(IMAGE) });
    core.get<NotifierRegistry>(NotifierRegistry).register('recorder', { create: () => ({ send: async (n) => void sent.push(n) }) });
    await core.get(InitOperation).run(job);
  });
  afterEach(async () => {
    await core.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it('sends start, then success with the saved snapshot', async () => {
    const { result } = await core.get(BackupOperation).run(job);
    expect(sent.map((n) => n.event)).toEqual(['start', 'success']);
    expect(sent[1]).toMatchObject({
      job: 'ops',
      operation: 'backup',
      time: '2026-12-01T02:00:00.000Z',
      durationMs: 0,
      warnings: [],
      snapshot: { id: result.snapshot, bytesRead: result.bytesRead, bytesAdded: result.bytesAdded, size: IMAGE.length },
    });
  });

  it('sends a warning naming an after-tap that failed; the snapshot stands', async () => {
    core.get<EngineHooks>(EngineHooks).backup.tap('Retention', (run) => {
      run.hooks.snapshotSaved.tapPromise('Retention', async () => {
        throw new Error('forget failed: repository is read-only');
      });
    });
    const { result, tapFailures } = await core.get(BackupOperation).run(job);
    expect(tapFailures).toHaveLength(1);
    expect(sent.map((n) => n.event)).toEqual(['start', 'warning']);
    expect(sent[1]!.snapshot?.id).toBe(result.snapshot);
    expect(sent[1]!.warnings).toEqual(['Retention (snapshotSaved): forget failed: repository is read-only']);
  });

  it('sends failure with the error, its code and exit code, and no snapshot', async () => {
    core.get<SourceRegistry>(SourceRegistry).get('memory')!.open = async () => {
      throw new SourceError('The source /dev/sdz does not exist');
    };
    await expect(core.get(BackupOperation).run(job)).rejects.toThrow('/dev/sdz');
    expect(sent.map((n) => n.event)).toEqual(['start', 'failure']);
    expect(sent[1]!.error).toEqual({ message: 'The source /dev/sdz does not exist', code: new SourceError('').code, exitCode: 1 });
    expect(sent[1]!.snapshot).toBeUndefined();
  });

  it('an incomplete snapshot (unreadable ranges) is a warning', async () => {
    const hooks = core.get<EngineHooks>(EngineHooks);
    const runner = core.get(HookRunner);
    const run: BackupRun = { job: job.info, operation: 'backup', options: {}, hooks: createBackupRunHooks() };
    const manifest = { size: 1000, unreadable: [{ offset: 0, length: 512 }, { offset: 4096, length: 512 }] } as unknown as SnapshotManifest;
    await core.get(JobRuns).run(run, async (tapFailures) => {
      await runner.before(hooks.backup, run);
      tapFailures.push(...(await runner.after(run.hooks.snapshotSaved, { id: 'ab'.repeat(32), time: clock.time.toISOString(), bytesRead: 488, bytesAdded: 100, manifest })));
    });
    expect(sent.map((n) => n.event)).toEqual(['start', 'warning']);
    expect(sent[1]!.warnings).toEqual(['The snapshot is incomplete: 1024 bytes in 2 unreadable range(s) of the source are stored as zeros']);
    expect(sent[1]!.snapshot).toEqual({ id: 'ab'.repeat(32), bytesRead: 488, bytesAdded: 100, size: 1000 });
  });

  it('sends nothing for a job without notify entries', async () => {
    await core.get(BackupOperation).run({ ...job, info: { ...job.info, job: { ...config, notify: [] } } });
    expect(sent).toEqual([]);
    expect(logged).toEqual([]);
  });
});
