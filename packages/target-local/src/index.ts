import type { PluginContext } from '@cairn/core';
import { localTargetFactory } from './local-target.js';

export async function activate(ctx: PluginContext): Promise<void> {
  ctx.subscriptions.push(ctx.targets.register('local', localTargetFactory));
}
