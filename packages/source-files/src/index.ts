import type { PluginContext } from '@cairn/core';
import { FilesSourceFactory } from './files-source.js';

export async function activate(ctx: PluginContext): Promise<void> {
  ctx.container.bind(FilesSourceFactory).toSelf();
  ctx.subscriptions.push(ctx.sources.register('files', ctx.container.get(FilesSourceFactory)));
}
