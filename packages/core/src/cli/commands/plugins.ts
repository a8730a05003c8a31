import { ExitCode } from '../../errors.js';
import { PluginHost } from '../../plugins/plugin-host.js';
import { defineCommand } from '../command.js';

export const pluginsCommand = defineCommand({
  command: 'plugins',
  describe: 'List the enabled plugins, their contributions and state',
  builder: (yargs) => yargs,
  async run(_args, { core, output }) {
    const plugins = core.get(PluginHost).plugins.map((p) => ({
      id: p.id,
      version: p.version ?? null,
      folder: p.folder ?? null,
      state: p.state,
      contributes: [...p.contributions.map((c) => `${c.point.replace(/s$/, '')}:${c.type}`), ...p.webApps.map((app) => `webApp:${app.type}`)],
      activationEvents: p.activationEvents,
      problems: p.problems,
    }));
    output.result(plugins, () =>
      plugins.map((p) => `${p.id} ${p.version ?? ''}  ${p.state}  ${p.contributes.join(', ')}${p.problems.length ? `\n  ${p.problems.join('\n  ')}` : ''}\n`).join(''),
    );
    return plugins.some((p) => p.state === 'failed') ? ExitCode.usage : ExitCode.ok;
  },
});
