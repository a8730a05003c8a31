import type { PluginContext } from '@cairn/core';
import { s3TargetFactory } from './s3-target.js';

export async function activate(ctx: PluginContext): Promise<void> {
  ctx.subscriptions.push(ctx.targets.register('s3', s3TargetFactory));
}
