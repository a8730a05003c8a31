import type { PluginContext } from '@cairn/core';
import { VolumeSourceFactory } from './volume-source.js';
import { GptRelocation } from './gpt-relocation-tap.js';
import { VolumeResize } from './resize/resize-tap.js';

export async function activate(ctx: PluginContext): Promise<void> {
  ctx.container.bind(VolumeSourceFactory).toSelf();
  ctx.container.bind(GptRelocation).toSelf();
  ctx.subscriptions.push(ctx.sources.register('volume', ctx.container.get(VolumeSourceFactory)));
  ctx.container.get(GptRelocation).tapHooks();
  ctx.container.bind(VolumeResize).toSelf();
  ctx.container.get(VolumeResize).tapHooks();
}
