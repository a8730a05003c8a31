import type { PluginContext } from '@cairn/core';
import { webhookNotifierFactory } from './webhook-notifier.js';

export async function activate(ctx: PluginContext): Promise<void> {
  ctx.subscriptions.push(ctx.notifiers.register('webhook', webhookNotifierFactory));
}
