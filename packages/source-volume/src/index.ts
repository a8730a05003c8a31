import type { PluginContext } from '@cairn/core';
import { VolumeSourceFactory } from './volume-source.js';
import { relocateBackupGpt } from './gpt-relocate.js';

const PLUGIN_NAME = 'VolumeSource';

export async function activate(ctx: PluginContext): Promise<void> {
  ctx.subscriptions.push(ctx.sources.register('volume', new VolumeSourceFactory()));
  // A whole-disk GPT image restored onto a larger disk: move the backup GPT to the new end.
  ctx.hooks.restore.tap(PLUGIN_NAME, (run) => {
    run.hooks.done.tapPromise(PLUGIN_NAME, async ({ destination, manifest, partial }) => {
      if (partial || manifest.source.type !== 'volume' || manifest.layout.partitionTable.type !== 'gpt') return;
      if (await relocateBackupGpt(destination, manifest.size, manifest.layout.sectorSize)) {
        ctx.logger.info(`moved the backup GPT of ${destination} to the end of the larger disk`);
      }
    });
  });
}
