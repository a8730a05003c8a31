import type { PluginContext } from '@cairn/core';
import { emailNotifierFactory } from './email-notifier.js';

export async function activate(ctx: PluginContext): Promise<void> {
  ctx.subscriptions.push(ctx.notifiers.register('email', emailNotifierFactory));
}
