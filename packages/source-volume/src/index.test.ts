import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createRestoreRunHooks, type Logger, type RestoreRun } from '@cairn/core';
import { createTestPluginContext } from '@cairn/core/testing';
import { activate } from './index.js';
import { VolumeSourceFactory } from './volume-source.js';

const PLUGIN_FOLDER = fileURLToPath(new URL('..', import.meta.url));
const MiB = 1024 * 1024;

function sgdisk(...args: string[]): string {
  const result = spawnSync('sgdisk', args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`sgdisk ${args.join(' ')}: ${result.stderr}${result.stdout}`);
  return result.stdout;
}

describe('activate', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-volume-plugin-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('binds its services in its own container, where the core injects its hooks and the plugin-named logger', async () => {
    const logged: string[] = [];
    const logger: Logger = { debug() {}, info: (m) => logged.push(m), warn() {}, error() {} };
    const context = await createTestPluginContext(PLUGIN_FOLDER, { logger });
    await activate(context);
    expect(context.sources.get('volume')).toBe(context.container.get(VolumeSourceFactory));
    expect(context.hooks.restore.taps.map((tap) => tap.name)).toEqual(['GptRelocation', 'VolumeResize']);

    // A GPT disk image of 4 MiB restored into an 8 MiB file: the injected tap moves the backup GPT to the new end.
    const disk = join(dir, 'disk.img');
    await writeFile(disk, Buffer.alloc(4 * MiB));
    sgdisk('-o', '-n', '1:2048:+1M', disk);
    await truncate(disk, 8 * MiB);
    const run: RestoreRun = { job: { name: 'j', file: '/j.json', job: {} }, operation: 'restore', hooks: createRestoreRunHooks() };
    context.hooks.restore.call(run);
    // restore --grow and --shrink: answered by the plugin's resize taps.
    expect([run.hooks.checkResize.taps.map((t) => t.name), run.hooks.resize.taps.map((t) => t.name)]).toEqual([['VolumeResize'], ['VolumeResize']]);
    const manifest = { size: 4 * MiB, layout: { size: 4 * MiB, sectorSize: 512, kind: 'file' as const, partitionTable: { type: 'gpt' as const }, mode: 'exact' as const, partitions: [] }, source: { type: 'volume', path: '/dev/x' } };
    await run.hooks.done.promise({ destination: disk, snapshot: 'ab'.repeat(32), bytesWritten: 4 * MiB, manifest, partial: false });
    expect(logged).toEqual([`[cairn.source-volume] moved the backup GPT of ${disk} to the end of the larger disk`]);
    expect(sgdisk('-v', disk)).toMatch(/No problems found/);

    await context.subscriptions.dispose();
    expect(context.sources.types()).toEqual([]);
  });
});
