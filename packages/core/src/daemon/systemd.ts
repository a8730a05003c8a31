import { execFile } from 'node:child_process';
import { access, mkdir, readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { ServiceInstallError, UsageError, describeSystemError } from '../errors.js';
import { CORE_PACKAGE_ROOT } from '../version.js';
import { writeFileAtomically } from './state-file.js';

/*
 * `cairn daemon --install-systemd`: the unit file shipped in packages/core/systemd/, with the
 * paths of this installation, written where systemd looks for it, then enabled and started.
 */

export const SYSTEMD_UNIT_NAME = 'cairn.service';
/** The unit as shipped: its ExecStart names /usr/bin/node and /opt/cairn; installing sets the real paths. */
export const SYSTEMD_UNIT_TEMPLATE = join(CORE_PACKAGE_ROOT, 'systemd', SYSTEMD_UNIT_NAME);
export const DEFAULT_JOBS_DIR = '/etc/cairn/jobs';
export const DEFAULT_UNIT_DIR = '/etc/systemd/system';
/** This installation's CLI. */
export const CAIRN_BIN = join(CORE_PACKAGE_ROOT, 'bin', 'cairn.js');

export interface SystemdInstallOptions {
  /** The folder of job files the daemon runs (created, mode 0700, when missing). Default /etc/cairn/jobs. */
  jobsDir?: string;
  /** Default /etc/systemd/system. */
  unitDir?: string;
  /** Default: the node running this process. */
  nodePath?: string;
  /** Default: this installation's packages/core/bin/cairn.js. */
  cairnBin?: string;
  /** Reload systemd and `enable --now` the service when systemd runs. Default true. */
  enable?: boolean;
  /** Whether systemd manages this machine. Default: /run/systemd/system exists (PID 1 is systemd). */
  systemdRunning?: boolean;
  /** The systemctl program. Default `systemctl` from PATH. */
  systemctl?: string;
}

export interface SystemdInstallResult {
  unitPath: string;
  /** Whether the service was enabled and started. */
  enabled: boolean;
  /** What is left to run by hand (empty when the service was enabled). */
  steps: string[];
}

/** Writes the unit and the jobs folder; enables and starts the service when systemd runs, else says how. */
export async function installSystemdService(options: SystemdInstallOptions = {}): Promise<SystemdInstallResult> {
  const jobsDir = resolve(options.jobsDir ?? DEFAULT_JOBS_DIR);
  const unitDir = options.unitDir ?? DEFAULT_UNIT_DIR;
  const unitPath = join(unitDir, SYSTEMD_UNIT_NAME);
  const unit = renderSystemdUnit(await readFile(SYSTEMD_UNIT_TEMPLATE, 'utf8'), { nodePath: options.nodePath ?? process.execPath, cairnBin: options.cairnBin ?? CAIRN_BIN, jobsDir });
  try {
    await mkdir(unitDir, { recursive: true });
    await writeFileAtomically(unitPath, unit, 0o644);
    await mkdir(jobsDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ServiceInstallError(`Cannot install the systemd service (${unitPath}, jobs in ${jobsDir}): ${describeSystemError(err)}`, { cause: err });
  }
  const steps = ['systemctl daemon-reload', `systemctl enable --now ${SYSTEMD_UNIT_NAME}`];
  if (options.enable === false || !(options.systemdRunning ?? (await systemdIsRunning()))) return { unitPath, enabled: false, steps };
  const systemctl = options.systemctl ?? 'systemctl';
  await runSystemctl(systemctl, ['daemon-reload']);
  await runSystemctl(systemctl, ['enable', '--now', SYSTEMD_UNIT_NAME]);
  return { unitPath, enabled: true, steps: [] };
}

/** systemd's own test (sd_booted): it creates this folder when it runs as PID 1. */
async function systemdIsRunning(): Promise<boolean> {
  return access('/run/systemd/system').then(
    () => true,
    () => false,
  );
}

async function runSystemctl(systemctl: string, args: string[]): Promise<void> {
  try {
    await promisify(execFile)(systemctl, args);
  } catch (err) {
    const { stderr } = err as { stderr?: string };
    const why = stderr?.trim() || describeSystemError(err);
    throw new ServiceInstallError(`systemctl ${args.join(' ')} failed: ${why}`, { cause: err });
  }
}

/** The shipped unit with ExecStart running `nodePath cairnBin daemon jobsDir`. */
export function renderSystemdUnit(template: string, paths: { nodePath: string; cairnBin: string; jobsDir: string }): string {
  for (const [name, path] of Object.entries(paths)) {
    if (!isAbsolute(path)) throw new UsageError(`The systemd unit needs absolute paths: ${name} is "${path}"`);
  }
  const execStart = /^ExecStart=.*$/m;
  if (!execStart.test(template)) throw new ServiceInstallError(`The unit template ${SYSTEMD_UNIT_TEMPLATE} has no ExecStart= line`);
  const command = [paths.nodePath, paths.cairnBin, 'daemon', paths.jobsDir].map(quoteSystemdWord).join(' ');
  return template.replace(execStart, () => `ExecStart=${command}`);
}

/**
 * One word of a systemd command line: `%` and `$` doubled (else they are specifiers and
 * variables), and in double quotes with `\` and `"` escaped when it holds anything but plain
 * path characters.
 */
export function quoteSystemdWord(word: string): string {
  if (/[\x00-\x1f\x7f]/.test(word)) throw new UsageError(`A path with a control character cannot be put in a systemd unit: ${JSON.stringify(word)}`);
  const literal = word.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  if (/^[A-Za-z0-9/._+:@=,%$-]+$/.test(literal)) return literal;
  return `"${literal.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}
