import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CodecRegistry, type Logger, TargetRegistry } from '../services.js';
import { PluginHost, pluginId } from './plugin-host.js';
import { createJobValidator } from '../job/job-schema.js';
import { createCoreContainer } from '../create-core.js';
import { PluginError } from '../errors.js';

const quietLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

describe('PluginHost', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-plugins-'));
  });
  afterEach(async () => {
    delete (globalThis as Record<string, unknown>).__cairnImported;
    await rm(dir, { recursive: true, force: true });
  });

  /** Writes a plugin folder; its main module records in a global that it was imported. */
  async function plugin(name: string, options: { engines?: string; cairn?: unknown; activate?: string } = {}): Promise<string> {
    const folder = join(dir, name);
    await mkdir(folder, { recursive: true });
    const cairn = options.cairn ?? { contributes: { targets: [{ type: name, schema: './schema.json' }] } };
    await writeFile(join(folder, 'package.json'), JSON.stringify({ name: `@acme/${name}`, version: '1.0.0', type: 'module', main: 'index.js', engines: { cairn: options.engines ?? '^0.1.0' }, cairn }));
    await writeFile(join(folder, 'schema.json'), JSON.stringify({ type: 'object', required: ['path'], properties: { path: { type: 'string' } }, additionalProperties: false }));
    await writeFile(
      join(folder, 'index.js'),
      `(globalThis.__cairnImported ??= []).push(${JSON.stringify(name)});
       export async function activate(ctx) { ${options.activate ?? `ctx.subscriptions.push(ctx.targets.register(${JSON.stringify(name)}, { create() {} }));`} }`,
    );
    return folder;
  }

  let container: ReturnType<typeof createCoreContainer>;

  async function host(entries: string[]): Promise<PluginHost> {
    await writeFile(join(dir, 'plugins.json'), JSON.stringify({ plugins: entries }));
    container = createCoreContainer({ pluginsFile: join(dir, 'plugins.json'), logger: quietLogger, env: {}, cwd: dir, coreVersion: '0.1.0' });
    const plugins = container.get(PluginHost);
    await plugins.discover();
    return plugins;
  }

  const imported = () => ((globalThis as Record<string, unknown>).__cairnImported as string[] | undefined) ?? [];

  it('takes a web app plugin of static files without code (no main), its root made absolute; a broken webApps entry is a broken manifest', async () => {
    const web = join(dir, 'web');
    await mkdir(web, { recursive: true });
    await writeFile(join(web, 'package.json'), JSON.stringify({ name: '@acme/web', version: '1.0.0', engines: { cairn: '^0.1.0' }, cairn: { contributes: { webApps: [{ type: 'dashboard', title: 'dash', root: './dist/app' }] } } }));
    const bad = join(dir, 'bad-web');
    await mkdir(bad, { recursive: true });
    await writeFile(join(bad, 'package.json'), JSON.stringify({ name: '@acme/bad-web', version: '1.0.0', engines: { cairn: '^0.1.0' }, cairn: { contributes: { webApps: [{ type: 'kiosk' }] } } }));
    const h = await host([web, bad]);
    expect(h.plugins.map((p) => [p.id, p.state, p.activationEvents])).toEqual([
      ['acme.web', 'inactive', []],
      ['acme.bad-web', 'failed', []],
    ]);
    expect(h.plugins[1]!.problems.join('\n')).toMatch(/broken manifest/);
    expect(h.webApps()).toEqual([{ type: 'dashboard', title: 'dash', root: join(web, 'dist/app'), pluginId: 'acme.web' }]);
  });

  it('reads manifests without importing plugin code, and imports on the activation event only', async () => {
    await plugin('alpha');
    await plugin('beta');
    const h = await host(['./alpha', './beta']);
    expect(h.plugins.map((p) => [p.id, p.state, p.activationEvents])).toEqual([
      ['acme.alpha', 'inactive', ['onTarget:alpha']],
      ['acme.beta', 'inactive', ['onTarget:beta']],
    ]);
    expect(imported()).toEqual([]);
    await h.activate('onTarget:beta');
    expect(imported()).toEqual(['beta']);
    expect(h.plugins[1]!.state).toBe('active');
    await h.dispose();
  });

  it('records broken, incompatible and missing plugins without stopping the others', async () => {
    await plugin('good');
    await plugin('old', { engines: '^9.0.0' });
    await plugin('broken', { cairn: { contributes: { targets: [{ type: 'Bad Type' }] } } });
    const h = await host(['./good', './old', './broken', './absent', 'no-such-package']);
    const byEntry = Object.fromEntries(h.plugins.map((p) => [p.entry, p]));
    expect(byEntry['./good']!.state).toBe('inactive');
    expect(byEntry['./old']!.problems.join()).toMatch(/'acme.old' requires cairn \^9.0.0, but this is cairn 0.1.0/);
    expect(byEntry['./broken']!.problems.join()).toMatch(/'acme.broken' has a broken manifest/);
    expect(byEntry['./absent']!.problems.join()).toMatch(/was not found/);
    expect(byEntry['no-such-package']!.problems.join()).toMatch(/is not installed/);
    expect(h.contributions('targets').map((c) => c.type)).toEqual(['good']);
  });

  it('names the plugin whose activate throws', async () => {
    await plugin('faulty', { activate: `throw new Error('no credentials');` });
    const h = await host(['./faulty']);
    const error = await h.activate('onTarget:faulty').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PluginError);
    expect((error as Error).message).toBe("Activating plugin 'acme.faulty' failed: no credentials");
    expect(h.plugins[0]!.state).toBe('failed');
  });

  it('refuses two plugins contributing the same type', async () => {
    await plugin('one', { cairn: { contributes: { targets: [{ type: 'same', schema: './schema.json' }] } } });
    await plugin('two', { cairn: { contributes: { targets: [{ type: 'same', schema: './schema.json' }] } } });
    const h = await host(['./one', './two']);
    expect(h.plugins[1]!.problems.join()).toMatch(/already contributes/);
  });

  it('merges contributed schemas into the job schema, with errors naming path and plugin', async () => {
    await plugin('alpha');
    const validator = createJobValidator(await host(['./alpha']));
    const job = { name: 'j', source: { type: 'none' }, target: { type: 'alpha', path: 5 }, password: { env: 'P' } };
    const problems = validator.validate(job);
    expect(problems).toContain('/target/path: must be string (plugin acme.alpha)');
    expect(validator.validate({ ...job, target: { type: 'alpha', path: '/x' } })).toEqual([
      '/source/type: no enabled plugin provides this kind of setting (see `cairn plugins`)',
    ]);
    expect(validator.validate({ ...job, target: { type: 'gamma' } })).toContain('/target/type: must be one of "alpha", not "gamma"');
    expect(validator.validate({ ...job, password: { env: 'P', file: 'x' } })).toContain('/password: must be {"env": NAME}, {"file": PATH} or {"command": [ARGV...]}');
  });

  it('holds a plugin to its manifest: an undeclared type or another codec header id fails its activation', async () => {
    await plugin('sneaky', { activate: `ctx.subscriptions.push(ctx.targets.register('sneaky', { create() {} })); ctx.targets.register('other', { create() {} });` });
    await plugin('smuggler', { activate: `ctx.sources.register('disk', { open() {} });` });
    const codecManifest = { contributes: { codecs: [{ type: 'lz', headerId: 42, schema: './schema.json' }] } };
    await plugin('misnumbered', { cairn: codecManifest, activate: `ctx.codecs.register({ name: 'lz', headerId: 43, moduleUrl: 'file:///x.js' });` });
    await plugin('honest', { cairn: codecManifest, activate: `ctx.subscriptions.push(ctx.codecs.register({ name: 'lz', headerId: 42, moduleUrl: 'file:///x.js' }));` });
    const h = await host(['./sneaky', './smuggler', './misnumbered']);
    const failure = (event: string) => h.activate(event).then(() => undefined, (e: unknown) => e as PluginError);
    const sneaky = await failure('onTarget:sneaky');
    expect(sneaky).toBeInstanceOf(PluginError);
    expect(sneaky!.message).toBe(
      `Activating plugin 'acme.sneaky' failed: Plugin 'acme.sneaky' registers target type "other", which its manifest does not declare (add it to "cairn.contributes.targets" in its package.json)`,
    );
    // What it registered before the refusal is undone with the failed activation.
    expect(container.get<TargetRegistry>(TargetRegistry).types()).toEqual([]);
    expect((await failure('onTarget:smuggler'))!.message).toMatch(/registers source type "disk", which its manifest does not declare/);
    expect((await failure('onCodec:lz'))!.message).toMatch(/registers codec "lz" with header id 43, but its manifest declares header id 42/);
    expect(container.get<CodecRegistry>(CodecRegistry).byName('lz')).toBeUndefined();

    const good = await host(['./honest']);
    await good.activate('onCodec:lz');
    expect(container.get<CodecRegistry>(CodecRegistry).byName('lz')).toMatchObject({ headerId: 42 });
    await good.dispose();
  });

  it('derives plugin ids like VS Code', () => {
    expect(pluginId('@Cairn/Target-S3')).toBe('cairn.target-s3');
    expect(pluginId('fancy-codec', 'acme')).toBe('acme.fancy-codec');
    expect(pluginId('plain')).toBe('plain');
  });
});
