import { Container, inject, injectable } from '../vendor.js';
import { PluginError } from '../errors.js';
import { toDisposable, type DisposableStore, type IDisposable } from '../lifecycle.js';
import { CodecRegistry, Logger, NotifierRegistry, SourceRegistry, TargetRegistry } from '../services.js';
import { EngineHooks } from '../hooks.js';
import type { CodecRegistration } from '../codec.js';
import type { PluginContext } from '../plugin.js';
import type { ContributionPoint } from './manifest.js';

/** The container the core's services live in: the parent of every plugin's own container. */
export const CoreContainer = Symbol.for('cairn.CoreContainer');

/** What a plugin's manifest declares, as the host read it. */
export interface DeclaredPlugin {
  id: string;
  folder?: string;
  contributions: ReadonlyArray<{ point: ContributionPoint; type: string; headerId?: number }>;
}

/**
 * Makes the context a plugin's `activate` receives: the core's hooks and logger, a child
 * container of its own, and registries that accept only what its manifest declares.
 */
@injectable()
export class PluginContextFactory {
  constructor(
    @inject(CoreContainer) private readonly container: Container,
    @inject(EngineHooks) private readonly hooks: Readonly<EngineHooks>,
    @inject(Logger) private readonly logger: Logger,
    @inject(TargetRegistry) private readonly targets: TargetRegistry,
    @inject(SourceRegistry) private readonly sources: SourceRegistry,
    @inject(CodecRegistry) private readonly codecs: CodecRegistry,
    @inject(NotifierRegistry) private readonly notifiers: NotifierRegistry,
  ) {}

  create(plugin: DeclaredPlugin, subscriptions: DisposableStore): PluginContext {
    const logger = prefixedLogger(this.logger, plugin.id);
    const container = new Container({ parent: this.container, defaultScope: 'Singleton' });
    // A plugin's services that inject the Logger get the one that names the plugin.
    container.bind(Logger).toConstantValue(logger);
    subscriptions.add(toDisposable(() => container.unbindAll()));
    return {
      id: plugin.id,
      extensionPath: plugin.folder ?? '',
      container,
      hooks: this.hooks,
      logger,
      targets: new DeclaredTypes(plugin, 'targets', this.targets),
      sources: new DeclaredTypes(plugin, 'sources', this.sources),
      codecs: new DeclaredCodecs(plugin, this.codecs),
      notifiers: new DeclaredTypes(plugin, 'notifiers', this.notifiers),
      subscriptions,
    };
  }
}

/** What one item of a contribution point is called in messages. */
const ITEM_NAMES = { targets: 'target', sources: 'source', notifiers: 'notifier' } as const;

/** A registry of sources, targets or notifiers through which a plugin registers only the types its manifest declares. */
class DeclaredTypes<T> implements TargetRegistry, SourceRegistry, NotifierRegistry {
  constructor(
    private readonly plugin: DeclaredPlugin,
    private readonly point: keyof typeof ITEM_NAMES,
    private readonly registry: { register(type: string, value: T): IDisposable; get(type: string): T | undefined; types(): string[] },
  ) {}

  register(type: string, value: any): IDisposable {
    if (!this.plugin.contributions.some((c) => c.point === this.point && c.type === type)) {
      const what = ITEM_NAMES[this.point];
      throw new PluginError(this.plugin.id, `Plugin '${this.plugin.id}' registers ${what} type "${type}", which its manifest does not declare (add it to "cairn.contributes.${this.point}" in its package.json)`);
    }
    return this.registry.register(type, value);
  }

  get(type: string): any {
    return this.registry.get(type);
  }

  types(): string[] {
    return this.registry.types();
  }
}

/** The codec registry as a plugin sees it: only codecs its manifest declares, with the header id declared there. */
class DeclaredCodecs implements CodecRegistry {
  constructor(
    private readonly plugin: DeclaredPlugin,
    private readonly registry: CodecRegistry,
  ) {}

  register(codec: CodecRegistration): IDisposable {
    const declared = this.plugin.contributions.find((c) => c.point === 'codecs' && c.type === codec.name);
    const id = this.plugin.id;
    if (!declared) throw new PluginError(id, `Plugin '${id}' registers codec "${codec.name}", which its manifest does not declare (add it to "cairn.contributes.codecs" in its package.json)`);
    if (declared.headerId !== codec.headerId) {
      throw new PluginError(id, `Plugin '${id}' registers codec "${codec.name}" with header id ${codec.headerId}, but its manifest declares header id ${declared.headerId}`);
    }
    return this.registry.register(codec);
  }

  byName(name: string): CodecRegistration | undefined {
    return this.registry.byName(name);
  }

  byHeaderId(id: number): CodecRegistration | undefined {
    return this.registry.byHeaderId(id);
  }

  all(): CodecRegistration[] {
    return this.registry.all();
  }
}

function prefixedLogger(logger: Logger, id: string): Logger {
  return {
    debug: (m) => logger.debug(`[${id}] ${m}`),
    info: (m) => logger.info(`[${id}] ${m}`),
    warn: (m) => logger.warn(`[${id}] ${m}`),
    error: (m) => logger.error(`[${id}] ${m}`),
  };
}
