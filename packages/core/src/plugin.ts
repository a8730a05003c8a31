import type { Container } from './vendor.js';
import type { DisposableStore } from './lifecycle.js';
import type { CodecRegistry, Logger, NotifierRegistry, SourceRegistry, TargetRegistry } from './services.js';
import type { EngineHooks } from './hooks.js';

/** What `activate(context)` receives. `activate` only registers things. */
export interface PluginContext {
  /** `publisher.name` or the package name, lower-cased. */
  readonly id: string;
  /** Absolute folder of the plugin package. */
  readonly extensionPath: string;
  /** The plugin's own child container; the parent holds the core services. */
  readonly container: Container;
  readonly hooks: Readonly<EngineHooks>;
  readonly logger: Logger;
  readonly targets: TargetRegistry;
  readonly sources: SourceRegistry;
  readonly codecs: CodecRegistry;
  readonly notifiers: NotifierRegistry;
  /** Disposed, in reverse order, when the plugin is deactivated. */
  readonly subscriptions: DisposableStore;
}

/** The shape of a plugin's main module. */
export interface PluginModule {
  activate(context: PluginContext): void | Promise<void>;
  deactivate?(): void | Promise<void>;
}
