import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { inject, injectable, semver } from '../vendor.js';
import { PluginError } from '../errors.js';
import { DisposableStore } from '../lifecycle.js';
import type { PluginModule } from '../plugin.js';
import { PluginContextFactory } from './plugin-context.js';
import { CONTRIBUTION_POINTS, derivedActivationEvents, manifestProblems, type ContributionPoint, type PluginManifest } from './manifest.js';

export interface LoadedContribution {
  point: ContributionPoint;
  type: string;
  title?: string;
  headerId?: number;
  /** The contributed JSON Schema, already read from the plugin folder. */
  schema: Record<string, unknown>;
  pluginId: string;
}

export interface PluginDescription {
  id: string;
  /** What plugins.json says. */
  entry: string;
  name?: string;
  version?: string;
  folder?: string;
  activationEvents: string[];
  contributions: LoadedContribution[];
  /** Its web apps, `root` made absolute. */
  webApps: LoadedWebApp[];
  state: 'inactive' | 'active' | 'failed';
  /** Why the plugin cannot be used (broken manifest, incompatible engine, failed activation). */
  problems: string[];
  main?: string;
}

export interface LoadedWebApp {
  type: 'dashboard';
  title?: string;
  /** Absolute path of the folder of built static files. */
  root: string;
  pluginId: string;
}

interface PluginsFile {
  plugins: string[];
}

/** Where the plugin host finds the enabled plugins, and the version they must be compatible with. */
export const PluginHostSettings = Symbol.for('cairn.PluginHostSettings');
export interface PluginHostSettings {
  /** Absolute path of the plugins.json to read. */
  pluginsFile: string;
  coreVersion: string;
}

/**
 * Reads plugin manifests without running plugin code, and activates a plugin the first
 * time something it contributes is needed (VS Code's activation events). A broken plugin is
 * recorded with its problems; the others keep working.
 */
@injectable()
export class PluginHost {
  readonly #plugins: PluginDescription[] = [];
  readonly #subscriptions = new Map<string, { store: DisposableStore; module: PluginModule }>();
  readonly pluginsFile: string;
  readonly #coreVersion: string;

  constructor(
    @inject(PluginHostSettings) settings: PluginHostSettings,
    @inject(PluginContextFactory) private readonly contexts: PluginContextFactory,
  ) {
    this.pluginsFile = settings.pluginsFile;
    this.#coreVersion = settings.coreVersion;
  }

  /** Reads plugins.json and every listed plugin's manifest; runs no plugin code. */
  async discover(): Promise<void> {
    let list: PluginsFile;
    try {
      list = JSON.parse(await readFile(this.pluginsFile, 'utf8'));
    } catch (err) {
      throw new PluginError(undefined, `Cannot read the plugin list ${this.pluginsFile}: ${(err as Error).message}`, { cause: err });
    }
    if (!list || !Array.isArray(list.plugins) || !list.plugins.every((p) => typeof p === 'string')) {
      throw new PluginError(undefined, `${this.pluginsFile} must be {"plugins": ["<package name or folder>", ...]}`);
    }
    for (const entry of list.plugins) this.#plugins.push(await describePlugin(entry, dirname(this.pluginsFile), this.#coreVersion, this.pluginsFile));
    this.#checkConflicts();
  }

  get plugins(): readonly PluginDescription[] {
    return this.#plugins;
  }

  /** Contributions of healthy plugins. */
  contributions(point: ContributionPoint): LoadedContribution[] {
    return this.#plugins.filter((p) => p.state !== 'failed').flatMap((p) => p.contributions.filter((c) => c.point === point));
  }

  /** Web apps of healthy plugins, in the order of plugins.json (the daemon serves the first). */
  webApps(): LoadedWebApp[] {
    return this.#plugins.filter((p) => p.state !== 'failed').flatMap((p) => p.webApps);
  }

  /** Plugins that could not be loaded, for error messages. */
  failedPlugins(): PluginDescription[] {
    return this.#plugins.filter((p) => p.state === 'failed');
  }

  /** Activates every plugin listening for `event` (e.g. `onTarget:s3`). */
  async activate(event: string): Promise<void> {
    for (const plugin of this.#plugins) {
      if (plugin.state !== 'inactive' || !plugin.activationEvents.includes(event)) continue;
      await this.#activatePlugin(plugin);
    }
  }

  async dispose(): Promise<void> {
    for (const [id, { store, module }] of [...this.#subscriptions].reverse()) {
      try {
        await module.deactivate?.();
      } finally {
        await store.dispose();
        this.#subscriptions.delete(id);
      }
    }
  }

  async #activatePlugin(plugin: PluginDescription): Promise<void> {
    const store = new DisposableStore();
    try {
      const module = (await import(pathToFileURL(plugin.main!).href)) as PluginModule;
      if (typeof module.activate !== 'function') throw new Error(`${plugin.main} does not export an activate function`);
      await module.activate(this.contexts.create(plugin, store));
      this.#subscriptions.set(plugin.id, { store, module });
      plugin.state = 'active';
    } catch (err) {
      await store.dispose().catch(() => undefined);
      plugin.state = 'failed';
      const message = `Activating plugin '${plugin.id}' failed: ${(err as Error)?.message ?? String(err)}`;
      plugin.problems.push(message);
      throw new PluginError(plugin.id, message, { cause: err });
    }
  }

  /** Two plugins contributing the same type (or codec id) are both unusable for it; say so up front. */
  #checkConflicts(): void {
    const seen = new Map<string, string>();
    for (const plugin of this.#plugins) {
      if (plugin.state === 'failed') continue;
      for (const c of plugin.contributions) {
        for (const key of [`${c.point}:${c.type}`, ...(c.headerId !== undefined ? [`codec-id:${c.headerId}`] : [])]) {
          const other = seen.get(key);
          if (other && other !== plugin.id) {
            plugin.state = 'failed';
            plugin.problems.push(`Plugin '${plugin.id}' contributes ${key.replace(':', ' ')}, which plugin '${other}' already contributes`);
          } else {
            seen.set(key, plugin.id);
          }
        }
      }
    }
  }
}

/**
 * Reads the manifest of the plugin `entry` (a folder relative to `base`, or an installed
 * package name) without running its code; problems are recorded, not thrown.
 */
export async function describePlugin(entry: string, base: string, coreVersion: string, listedIn = 'plugins.json'): Promise<PluginDescription> {
  const description: PluginDescription = { id: entry.toLowerCase(), entry, activationEvents: [], contributions: [], webApps: [], state: 'inactive', problems: [] };
  const fail = (problem: string) => {
    description.state = 'failed';
    description.problems.push(problem);
    return description;
  };
  let packageJsonPath: string;
  if (entry.startsWith('.') || isAbsolute(entry)) {
    packageJsonPath = join(resolve(base, entry), 'package.json');
  } else {
    try {
      packageJsonPath = createRequire(join(base, 'package.json')).resolve(`${entry}/package.json`);
    } catch {
      return fail(`Plugin '${entry}' listed in ${listedIn} is not installed (no package of that name can be found from ${base})`);
    }
  }
  let pkg: Record<string, any>;
  try {
    pkg = JSON.parse(await readFile(packageJsonPath, 'utf8'));
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    return fail(missing ? `Plugin '${entry}' listed in ${listedIn} was not found: ${packageJsonPath} does not exist` : `Plugin '${entry}': ${packageJsonPath} is not valid JSON`);
  }
  description.folder = dirname(packageJsonPath);
  description.name = pkg.name;
  description.version = pkg.version;
  if (typeof pkg.name === 'string') description.id = pluginId(pkg.name, pkg.cairn?.publisher);
  const label = `Plugin '${description.id}'`;
  if (!pkg.cairn) return fail(`${label} has no "cairn" section in its package.json, so it contributes nothing`);
  const problems = manifestProblems(pkg.cairn);
  if (problems.length > 0) return fail(`${label} has a broken manifest: ${problems.join('; ')}`);
  const range = pkg.engines?.cairn;
  if (typeof range !== 'string' || !semver.validRange(range)) return fail(`${label} does not declare a valid "engines.cairn" version range`);
  if (!semver.satisfies(coreVersion, range)) return fail(`${label} requires cairn ${range}, but this is cairn ${coreVersion}`);
  const manifest = pkg.cairn as PluginManifest;
  description.webApps = (manifest.contributes.webApps ?? []).map((app) => ({ type: app.type, ...(app.title && { title: app.title }), root: resolve(description.folder!, app.root), pluginId: description.id }));
  // A plugin of static web files only has no code to run.
  if (typeof pkg.main !== 'string' && !onlyWebApps(manifest)) return fail(`${label} has no "main" entry`);
  if (typeof pkg.main === 'string') description.main = resolve(description.folder, pkg.main);

  description.activationEvents = [...new Set([...(manifest.activationEvents ?? []), ...derivedActivationEvents(manifest)])];
  const problem = await readContributions(description, manifest);
  return problem ? fail(problem) : description;
}

function onlyWebApps(manifest: PluginManifest): boolean {
  const points = Object.entries(manifest.contributes).filter(([, list]) => Array.isArray(list) && list.length > 0).map(([point]) => point);
  return points.length > 0 && points.every((point) => point === 'webApps');
}

/** Reads the schema of each contribution; returns a problem, or undefined when all are readable. */
async function readContributions(description: PluginDescription, manifest: PluginManifest): Promise<string | undefined> {
  for (const point of Object.keys(CONTRIBUTION_POINTS) as ContributionPoint[]) {
    for (const c of manifest.contributes[point] ?? []) {
      const schemaPath = resolve(description.folder!, c.schema);
      try {
        const schema = JSON.parse(await readFile(schemaPath, 'utf8'));
        description.contributions.push({ point, type: c.type, title: c.title, headerId: (c as { headerId?: number }).headerId, schema, pluginId: description.id });
      } catch (err) {
        return `Plugin '${description.id}': cannot read the schema ${schemaPath} of its ${point} contribution "${c.type}": ${(err as Error).message}`;
      }
    }
  }
  return undefined;
}

/** `@acme/target-x` → `acme.target-x`; `name` with a publisher → `publisher.name`. Lower case. */
export function pluginId(packageName: string, publisher?: string): string {
  const scoped = /^@([^/]+)\/(.+)$/.exec(packageName);
  const id = scoped ? `${scoped[1]}.${scoped[2]}` : publisher ? `${publisher}.${packageName}` : packageName;
  return id.toLowerCase();
}
