import type { PluginContext } from '@cairn/core';

export async function activate(ctx: PluginContext): Promise<void> {
  // Workers import the codec module by URL; nothing from this module reaches them.
  ctx.subscriptions.push(
    ctx.codecs.register({ name: 'zstd', headerId: 1, moduleUrl: new URL('./zstd-codec.js', import.meta.url).href }),
  );
}
