import { Container } from '../vendor.js';
import { DisposableStore } from '../lifecycle.js';
import { createEngineHooks } from '../hooks.js';
import type { PluginContext } from '../plugin.js';
import type { Logger } from '../services.js';
import { DefaultCodecRegistry, DefaultSourceRegistry, DefaultTargetRegistry } from '../plugins/registries.js';

const quietLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * A real `PluginContext` (the core's own registries, hooks and a child container) for testing
 * a plugin's `activate` without the plugin host: activate, look the contribution up in
 * `context.targets` / `sources` / `codecs`, dispose `context.subscriptions`.
 */
export function createTestPluginContext(id = 'test.plugin'): PluginContext {
  return {
    id,
    extensionPath: process.cwd(),
    container: new Container(),
    hooks: createEngineHooks(),
    logger: quietLogger,
    targets: new DefaultTargetRegistry(),
    sources: new DefaultSourceRegistry(),
    codecs: new DefaultCodecRegistry(),
    subscriptions: new DisposableStore(),
  };
}
