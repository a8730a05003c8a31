import { Container, ContainerModule, type ServiceIdentifier } from './vendor.js';
import { Environment, Logger, ProgressFactory } from './services.js';
import { EngineHooks, HookContribution } from './hooks.js';
import type { IDisposable } from './lifecycle.js';
import { silentProgress } from './pipeline/progress.js';
import { PluginHost, PluginHostSettings } from './plugins/plugin-host.js';
import { CoreContainer } from './plugins/plugin-context.js';
import { coreModule } from './core-module.js';
import { CORE_VERSION } from './version.js';

export interface CoreOptions {
  /** The plugins.json listing the enabled plugins (absolute). */
  pluginsFile: string;
  logger: Logger;
  /** Default: this process's environment variables. */
  env?: NodeJS.ProcessEnv;
  /** Folder relative paths are resolved against. Default: this process's working folder. */
  cwd?: string;
  /** Where the job's hook commands write their output. Default: this process's stderr. */
  stderr?: NodeJS.WritableStream;
  /** Progress displays of long operations. Default: none. */
  progress?: ProgressFactory;
  /** Loaded after the core's own module: bind more services, or `rebind` one (a clock in tests). */
  modules?: ContainerModule[];
  /** Default: this cairn's version; plugins' `engines.cairn` must accept it. */
  coreVersion?: string;
}

/** The core of one process: its container, with plugins discovered and the core's hook taps made. */
export interface Core extends IDisposable {
  readonly container: Container;
  get<T>(id: ServiceIdentifier<T>): T;
  /** Deactivates the plugins that were activated. */
  dispose(): Promise<void>;
}

/** The composition root: builds the container from the core's modules and the options. */
export function createCoreContainer(options: CoreOptions): Container {
  const container = new Container({ defaultScope: 'Singleton' });
  container.load(coreModule, runtimeModule(options, container), ...(options.modules ?? []));
  return container;
}

/** Builds the core, reads the plugin manifests (no plugin code runs) and taps the core's hooks. */
export async function createCore(options: CoreOptions): Promise<Core> {
  const container = createCoreContainer(options);
  const plugins = container.get(PluginHost);
  await plugins.discover();
  const hooks = container.get<Readonly<EngineHooks>>(EngineHooks);
  for (const contribution of container.getAll<HookContribution>(HookContribution)) contribution.tapHooks(hooks);
  return {
    container,
    get: (id) => container.get(id),
    dispose: () => plugins.dispose(),
  };
}

function runtimeModule(options: CoreOptions, container: Container): ContainerModule {
  return new ContainerModule(({ bind }) => {
    bind(CoreContainer).toConstantValue(container);
    bind(Logger).toConstantValue(options.logger);
    bind(Environment).toConstantValue({ env: options.env ?? process.env, cwd: options.cwd ?? process.cwd(), stderr: options.stderr ?? process.stderr } satisfies Environment);
    bind(ProgressFactory).toConstantValue(options.progress ?? { create: () => silentProgress });
    bind(PluginHostSettings).toConstantValue({ pluginsFile: options.pluginsFile, coreVersion: options.coreVersion ?? CORE_VERSION } satisfies PluginHostSettings);
  });
}
