import type { PluginContext } from '@cairn/core';
import { healthchecksNotifierFactory } from './healthchecks-notifier.js';

export async function activate(ctx: PluginContext): Promise<void> {
  ctx.subscriptions.push(ctx.notifiers.register('healthchecks', healthchecksNotifierFactory));
}
