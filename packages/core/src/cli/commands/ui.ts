import { spawn } from 'node:child_process';
import { mkdir, open } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ExitCode, UsageError } from '../../errors.js';
import { Environment } from '../../services.js';
import { PluginHost } from '../../plugins/plugin-host.js';
import { daemonIsRunning, readDaemonState } from '../../daemon/state-file.js';
import { defaultStateDir } from '../../daemon/state.js';
import { readWebToken } from '../../daemon/web/web-token.js';
import { DEFAULT_WEB_ADDRESS } from '../../daemon/web/web-address.js';
import { CORE_PACKAGE_ROOT } from '../../version.js';
import { defineCommand } from '../command.js';
import { listOf } from '../format.js';

/** How long `cairn ui` waits for a daemon it started to serve the dashboard. */
const START_TIMEOUT_MS = 60_000;

export const uiCommand = defineCommand({
  command: 'ui [jobs..]',
  describe: 'Print the address of the dashboard (with its token) of the daemon running with --web; start that daemon for the job files named when none runs',
  builder: (yargs) =>
    yargs
      .positional('jobs', { type: 'string', array: true, describe: 'Job files, and folders of them, for a daemon to start when none runs' })
      .option('state-dir', { type: 'string', describe: 'The daemon\'s state folder (default: $CAIRN_STATE_DIR, else /var/lib/cairn for root, else ~/.local/state/cairn)' })
      .option('web', { type: 'string', default: DEFAULT_WEB_ADDRESS, describe: 'Where a daemon started by `cairn ui` serves the dashboard' })
      .option('open', { type: 'boolean', default: false, describe: 'Open the address in the desktop\'s browser (xdg-open)' }),
  async run(args, { core, output }) {
    const environment = core.get<Environment>(Environment);
    const stateDir = resolve(environment.cwd, args.stateDir ?? defaultStateDir(environment.env));
    const base = (await runningDashboard(stateDir)) ?? (await startDaemon(listOf(args.jobs), args.web, stateDir, core.get(PluginHost).pluginsFile, environment));
    const token = await readWebToken(stateDir);
    if (!token) throw new UsageError(`The dashboard's token is missing from ${stateDir}: restart the daemon with --web`);
    const url = `${base}/?token=${token}`;
    if (args.open) openInBrowser(url);
    output.result({ url }, () => `${url}\n`);
    return ExitCode.ok;
  },
});

/** The dashboard's address when a daemon with --web runs with this state folder. */
async function runningDashboard(stateDir: string): Promise<string | undefined> {
  const state = await readDaemonState(stateDir);
  if (!state || !daemonIsRunning(state)) return undefined;
  if (!state.daemon.web) throw new UsageError(`The cairn daemon (pid ${state.daemon.pid}) running with the state folder ${stateDir} serves no dashboard: restart it with --web`);
  return state.daemon.web.url;
}

/**
 * Starts `cairn daemon --web` for `jobs` in the background (its own session, its log appended
 * to `<state dir>/daemon.log`) and waits until its state names the dashboard's address.
 */
async function startDaemon(jobs: string[], web: string, stateDir: string, pluginsFile: string, environment: Environment): Promise<string> {
  if (jobs.length === 0) throw new UsageError(`No daemon with the dashboard runs with the state folder ${stateDir}: name the job files (or folders of them) for one to start, or start it yourself with cairn daemon --web`);
  const cli = join(CORE_PACKAGE_ROOT, 'bin', 'cairn.js');
  const logPath = join(stateDir, 'daemon.log');
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const log = await open(logPath, 'a', 0o600);
  const argv = [...process.execArgv, cli, 'daemon', ...jobs.map((job) => resolve(environment.cwd, job)), '--web', web, '--state-dir', stateDir, '--plugins', pluginsFile, '--log-format', 'json'];
  const child = spawn(process.execPath, argv, { cwd: environment.cwd, env: environment.env, detached: true, stdio: ['ignore', log.fd, log.fd] });
  let exited: number | null | undefined;
  child.once('exit', (code) => (exited = code));
  child.unref();
  await log.close();
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const state = await readDaemonState(stateDir).catch(() => undefined);
    const web = state && state.daemon.pid === child.pid ? state.daemon.web : undefined;
    if (web) return web.url;
    if (exited !== undefined) throw new UsageError(`The daemon did not start (exit code ${exited}); its log is ${logPath}`);
    await sleep(100);
  }
  throw new UsageError(`The daemon started (pid ${child.pid}) but did not serve the dashboard within ${START_TIMEOUT_MS / 1000} s; its log is ${logPath}`);
}

/** Best effort: a server without a desktop has no xdg-open, and the address is printed anyway. */
function openInBrowser(url: string): void {
  const child = spawn('xdg-open', [url], { detached: true, stdio: 'ignore' });
  child.once('error', () => undefined);
  child.unref();
}
