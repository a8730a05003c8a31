import type { PluginContext } from '@cairn/core';
import { VolumeSourceFactory } from './volume-source.js';

export async function activate(ctx: PluginContext): Promise<void> {
  ctx.subscriptions.push(ctx.sources.register('volume', new VolumeSourceFactory()));
}
