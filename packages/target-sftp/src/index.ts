import type { PluginContext, TargetFactory } from '@cairn/core';

/**
 * Creates SFTP targets. The implementation, and with it the SSH library, is imported only
 * when a job actually uses an `sftp` target, so activating the plugin stays cheap.
 */
export const sftpTargetFactory: TargetFactory = {
  async create(settings, context) {
    const { createSftpTarget } = await import('./sftp-target.js');
    return createSftpTarget(settings, context);
  },
};

export async function activate(ctx: PluginContext): Promise<void> {
  ctx.subscriptions.push(ctx.targets.register('sftp', sftpTargetFactory));
}
