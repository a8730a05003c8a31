import { resolve } from 'node:path';
import { UsageError, ExitCode } from '../../errors.js';
import { Clock, Environment, Logger } from '../../services.js';
import { JobLoader } from '../../job/job-loader.js';
import { PluginHost } from '../../plugins/plugin-host.js';
import { Notifications } from '../../notifications/notifications.js';
import { Daemon } from '../../daemon/daemon.js';
import { daemonLogger, type DaemonLogger } from '../../daemon/daemon-logger.js';
import { defaultStateDir, type DaemonState, type RunRecord } from '../../daemon/state.js';
import type { RunningTask } from '../../daemon/web/dashboard.js';
import { parseDurationMs } from '../../daemon/duration.js';
import { renderMetrics, startMetricsServer, writeMetricsTextfile } from '../../daemon/metrics.js';
import { installSystemdService } from '../../daemon/systemd.js';
import { defineCommand } from '../command.js';
import type { Output } from '../output.js';
import { listOf } from '../format.js';
import { startDashboard } from '../../daemon/web/start-dashboard.js';
import { DashboardEvents } from '../../daemon/web/dashboard.js';
import { LogRing, teeLogger } from '../../daemon/web/log-ring.js';
import { RunHistory } from '../../daemon/web/history.js';
import { webListenOptions } from '../../daemon/web/web-address.js';

const DEFAULT_JOBS_DIR = '/etc/cairn/jobs';

export const daemonCommand = defineCommand({
  command: 'daemon [jobs..]',
  describe: 'Run the jobs on their schedules (backup, prune and check), until SIGTERM or SIGINT; SIGHUP reloads the job files',
  builder: (yargs) =>
    yargs
      .positional('jobs', { type: 'string', array: true, describe: 'Job files, and folders whose *.json files are job files' })
      .option('state-dir', { type: 'string', describe: 'Where the daemon keeps its state (default: $CAIRN_STATE_DIR, else /var/lib/cairn for root, else ~/.local/state/cairn)' })
      .option('grace', { type: 'string', default: '10m', describe: 'On SIGTERM or SIGINT, let running tasks finish for this long (e.g. 30s, 10m) before telling them to stop' })
      .option('metrics', { type: 'string', describe: 'Serve Prometheus metrics at http://ADDRESS:PORT/metrics (e.g. 127.0.0.1:9564)' })
      .option('metrics-allow-remote', { type: 'boolean', default: false, describe: 'Let --metrics listen on an address other than loopback' })
      .option('metrics-file', { type: 'string', describe: "Write the metrics to this .prom file after every change (node_exporter's textfile collector)" })
      .option('web', { type: 'string', describe: 'Serve the dashboard and its API at http://ADDRESS:PORT (no value: 127.0.0.1:8780); `cairn ui` prints its address with the token' })
      .option('web-allow-remote', { type: 'boolean', default: false, describe: 'Let --web listen on an address other than loopback (needs --web-tls-cert and --web-tls-key)' })
      .option('web-tls-cert', { type: 'string', describe: 'With --web: serve HTTPS with this PEM certificate (chain)' })
      .option('web-tls-key', { type: 'string', describe: "With --web: the PEM private key of --web-tls-cert's certificate" })
      .option('watch', { type: 'boolean', default: true, describe: 'Read the job files again when they change (--no-watch: only on SIGHUP, e.g. on network file systems that report no changes)' })
      .option('log-format', { choices: ['auto', 'json', 'text'] as const, default: 'auto' as const, describe: 'auto: JSON lines unless stderr is a terminal' })
      .option('systemd-unit-dir', { type: 'string', default: '/etc/systemd/system', describe: 'With --install-systemd: where the unit file goes' })
      .option('install-systemd', { type: 'boolean', default: false, describe: `Install and enable the systemd service cairn.service, running the jobs of the folder given (default ${DEFAULT_JOBS_DIR})` }),
  handlesInterrupt: true,
  createLogger: (io, args) => daemonLogger(io.stderr, { json: args.logFormat === 'json' || (args.logFormat === 'auto' && !io.stderr.isTTY), verbose: args.verbose }),
  async run(args, { core, output, interrupt }) {
    const jobs = listOf(args.jobs);
    if (args.installSystemd) return install(jobs, args.systemdUnitDir, core.get<Environment>(Environment).cwd, output);
    if (jobs.length === 0) throw new UsageError('Name the job files, or folders of them, to run');
    const graceMs = parseFlagDuration(args.grace, '--grace');
    const environment = core.get<Environment>(Environment);
    const clock = core.get<Clock>(Clock);
    const web = args.web === undefined ? undefined : webListenOptions({ web: args.web, allowRemote: args.webAllowRemote, tlsCert: args.webTlsCert && resolve(environment.cwd, args.webTlsCert), tlsKey: args.webTlsKey && resolve(environment.cwd, args.webTlsKey) });
    // The dashboard shows recent log lines, and live events of the state, runs and progress.
    const logRing = new LogRing();
    const events = new DashboardEvents();
    const logger = web ? teeLogger(core.get<Logger>(Logger) as DaemonLogger, logRing, args.verbose) : (core.get<Logger>(Logger) as DaemonLogger);
    const loader = core.get(JobLoader);
    const notifications = core.get(Notifications);
    const stateDir = resolve(environment.cwd, args.stateDir ?? defaultStateDir(environment.env));
    const metricsFile = args.metricsFile && resolve(environment.cwd, args.metricsFile);
    const history = new RunHistory(stateDir);
    const daemon = new Daemon({
      paths: jobs,
      cwd: environment.cwd,
      env: environment.env,
      stateDir,
      pluginsFile: core.get(PluginHost).pluginsFile,
      verbose: args.verbose,
      watch: args.watch,
      clock,
      logger,
      loadJob: (file) => loader.load(file),
      notify: async (job, notification) => {
        if (notification) await notifications.notify(job, { ...notification, job: job.info.name });
      },
      onState: async (state: DaemonState) => {
        if (metricsFile) await writeMetricsTextfile(metricsFile, renderMetrics(state, clock.now()));
        events.emit('state', state);
      },
      // Kept also without --web: a dashboard started later shows the runs before it.
      onRunFinished: (job: string, record: RunRecord) => history.append(job, record),
      ...(web && { onProgress: (running: RunningTask) => events.emit('progress', running) }),
    });
    await daemon.start();
    const dashboard = web && (await startDashboard({ listen: web, daemon, events, history, logRing, logger, webApps: core.get(PluginHost).webApps() }));
    const server = args.metrics ? await startMetricsServer(args.metrics, () => renderMetrics(daemon.state, clock.now()), { allowRemote: args.metricsAllowRemote }) : undefined;
    if (server) logger.info(`metrics at http://${server.address}/metrics`);
    await untilSignalled(interrupt, () => void daemon.reload());
    logger.info(`${String(interrupt.reason)} received`);
    await dashboard?.dispose();
    await daemon.stop(graceMs);
    await server?.dispose();
    return ExitCode.ok;
  },
});

/** Resolves on the interrupt; meanwhile SIGHUP calls `reload` (instead of ending the process). */
async function untilSignalled(interrupt: AbortSignal, reload: () => void): Promise<void> {
  process.on('SIGHUP', reload);
  try {
    await new Promise<void>((resolvePromise) => {
      if (interrupt.aborted) return resolvePromise();
      interrupt.addEventListener('abort', () => resolvePromise(), { once: true });
    });
  } finally {
    process.off('SIGHUP', reload);
  }
}

async function install(jobs: string[], unitDir: string, cwd: string, output: Output): Promise<ExitCode> {
  if (jobs.length > 1) throw new UsageError('--install-systemd takes one folder of job files');
  const jobsDir = resolve(cwd, jobs[0] ?? DEFAULT_JOBS_DIR);
  const installed = await installSystemdService({ jobsDir, unitDir: resolve(cwd, unitDir), enable: true });
  const next = installed.enabled ? '; the service is enabled and started\n' : `\nsystemd does not run here (it is not PID 1); to enable and start the service, run:\n${installed.steps.map((s: string) => `  ${s}\n`).join('')}`;
  output.result(installed, () => `Installed ${installed.unitPath} for the jobs in ${jobsDir}${next}`);
  return ExitCode.ok;
}

function parseFlagDuration(text: string, flag: string): number {
  try {
    return parseDurationMs(text);
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}
