import type { LoadedWebApp } from '../../plugins/plugin-host.js';
import type { Daemon } from '../daemon.js';
import type { DaemonLogger } from '../daemon-logger.js';
import type { DashboardEvents } from './dashboard.js';
import type { RunHistory } from './history.js';
import type { LogRing } from './log-ring.js';
import { Restores } from './restores.js';
import { ImageMounts } from './image-mounts.js';
import { join } from 'node:path';
import type { WebListenOptions } from './web-address.js';
import { startWebServer } from './web-server.js';
import { loadOrCreateWebToken } from './web-token.js';

export interface DashboardOptions {
  listen: WebListenOptions;
  daemon: Daemon;
  events: DashboardEvents;
  history: RunHistory;
  logRing: LogRing;
  logger: DaemonLogger;
  /** The enabled plugins' web apps: the first is served. */
  webApps: LoadedWebApp[];
}

/**
 * `cairn daemon --web`: the token (made at the first start), the server, and the address kept
 * in the daemon's state for `cairn ui`. Disposing stops the server and removes the address.
 */
export async function startDashboard(options: DashboardOptions): Promise<{ url: string; dispose(): Promise<void> }> {
  const { daemon, logger } = options;
  const token = await loadOrCreateWebToken(daemon.stateDir);
  const restores = new Restores(options.events, logger);
  const mounts = new ImageMounts(join(daemon.stateDir, 'mounts'), logger);
  await mounts.removeLeftovers();
  const stopLog = options.logRing.listen((line) => options.events.emit('log', line));
  const app = options.webApps[0];
  const server = await startWebServer({
    listen: options.listen,
    token,
    services: { backend: daemon, restores, mounts, history: options.history, log: options.logRing, logger },
    events: options.events,
    ...(app && { appRoot: app.root }),
    logger,
  });
  await daemon.setWebUrl(server.url);
  logger.info(`dashboard at ${server.url}/ (${app ? `${app.title ?? 'web app'} of plugin ${app.pluginId}` : 'no web app plugin enabled: API only'}); \`cairn ui\` prints the address with the token`);
  return {
    url: server.url,
    async dispose() {
      stopLog();
      await server.dispose();
      await restores.stop();
      await mounts.dispose();
      await daemon.setWebUrl(undefined);
    },
  };
}
