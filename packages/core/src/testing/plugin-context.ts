import { DisposableStore } from '../lifecycle.js';
import type { PluginContext } from '../plugin.js';
import type { Logger } from '../services.js';
import { createCoreContainer } from '../create-core.js';
import { PluginContextFactory } from '../plugins/plugin-context.js';
import { describePlugin } from '../plugins/plugin-host.js';
import { PluginError } from '../errors.js';
import { CORE_VERSION } from '../version.js';

const quietLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * A real `PluginContext` for testing a plugin's `activate` without a plugins.json: the core's
 * own container, registries and hooks, the plugin's child container, and registries held to
 * the manifest in `pluginFolder`'s package.json (as the plugin host holds it). Activate, look
 * the contribution up in `context.targets` / `sources` / `codecs`, dispose `context.subscriptions`.
 */
export async function createTestPluginContext(pluginFolder: string, options: { logger?: Logger } = {}): Promise<PluginContext> {
  const description = await describePlugin(pluginFolder, process.cwd(), CORE_VERSION);
  if (description.state === 'failed') throw new PluginError(description.id, description.problems.join('; '));
  const container = createCoreContainer({ pluginsFile: '/dev/null', logger: options.logger ?? quietLogger, env: {}, cwd: pluginFolder });
  return container.get(PluginContextFactory).create(description, new DisposableStore());
}
