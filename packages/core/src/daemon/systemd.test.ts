import { execFile, execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ServiceInstallError, UsageError } from '../errors.js';
import { CAIRN_BIN, SYSTEMD_UNIT_TEMPLATE, installSystemdService, quoteSystemdWord, renderSystemdUnit } from './systemd.js';

/** Debian's systemd package (scripts/setup.sh installs it) gives systemd-analyze, which checks unit files offline. */
const HAS_SYSTEMD_ANALYZE = (() => {
  try {
    execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** `systemd-analyze verify` of a unit: what it says (warnings of unknown keys, bad values, missing programs) and the unit as systemd parsed it. */
async function verifyUnit(unitPath: string): Promise<{ warnings: string; dump: string }> {
  const analyze = (env: Record<string, string>) =>
    promisify(execFile)('systemd-analyze', ['verify', '--man=no', unitPath], { env: { ...process.env, SYSTEMD_LOG_TARGET: 'console', ...env } });
  const { stderr: warnings } = await analyze({});
  // At debug level it also prints each unit as parsed, command lines included, on stdout.
  const { stdout: dump } = await analyze({ SYSTEMD_LOG_LEVEL: 'debug' });
  return { warnings, dump };
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-systemd-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('installSystemdService', () => {
  it('writes the shipped unit with the paths of this installation, and the jobs folder (0700)', async () => {
    const unitDir = join(dir, 'system');
    const jobsDir = join(dir, 'etc', 'jobs');
    const result = await installSystemdService({ unitDir, jobsDir, systemdRunning: false });
    expect(result).toEqual({ unitPath: join(unitDir, 'cairn.service'), enabled: false, steps: ['systemctl daemon-reload', 'systemctl enable --now cairn.service'] });
    const unit = await readFile(result.unitPath, 'utf8');
    const template = await readFile(SYSTEMD_UNIT_TEMPLATE, 'utf8');
    expect(unit.split('\n').filter((line) => line.startsWith('ExecStart='))).toEqual([`ExecStart=${process.execPath} ${CAIRN_BIN} daemon ${jobsDir}`]);
    // Everything else as shipped.
    expect(unit.replace(/^ExecStart=.*$/m, '')).toBe(template.replace(/^ExecStart=.*$/m, ''));
    expect((await stat(result.unitPath)).mode & 0o777).toBe(0o644);
    expect((await stat(jobsDir)).mode & 0o777).toBe(0o700);
  });

  it('leaves an existing jobs folder as it is, and replaces an earlier unit', async () => {
    const jobsDir = join(dir, 'jobs');
    await mkdir(jobsDir, { mode: 0o750 });
    await chmod(jobsDir, 0o750);
    await writeFile(join(jobsDir, 'a.json'), '{}');
    await installSystemdService({ unitDir: dir, jobsDir, nodePath: '/usr/local/bin/node', systemdRunning: false });
    const { unitPath } = await installSystemdService({ unitDir: dir, jobsDir, systemdRunning: false });
    expect(await readFile(unitPath, 'utf8')).toContain(`ExecStart=${process.execPath} `);
    expect((await stat(jobsDir)).mode & 0o777).toBe(0o750);
    expect(await readFile(join(jobsDir, 'a.json'), 'utf8')).toBe('{}');
  });

  it('only writes when asked not to enable, even where systemd runs', async () => {
    const systemctl = await recordingSystemctl(0);
    const result = await installSystemdService({ unitDir: dir, jobsDir: join(dir, 'jobs'), enable: false, systemdRunning: true, systemctl: systemctl.path });
    expect(result.enabled).toBe(false);
    expect(result.steps).toHaveLength(2);
    expect(await systemctl.calls()).toEqual([]);
  });

  it('reloads systemd and enables and starts the service where systemd runs', async () => {
    const systemctl = await recordingSystemctl(0);
    const result = await installSystemdService({ unitDir: dir, jobsDir: join(dir, 'jobs'), systemdRunning: true, systemctl: systemctl.path });
    expect(result).toEqual({ unitPath: join(dir, 'cairn.service'), enabled: true, steps: [] });
    expect(await systemctl.calls()).toEqual(['daemon-reload', 'enable --now cairn.service']);
  });

  it('says what systemctl said when it fails', async () => {
    const systemctl = await recordingSystemctl(1, 'Failed to enable unit: Access denied');
    const error = await installSystemdService({ unitDir: dir, jobsDir: join(dir, 'jobs'), systemdRunning: true, systemctl: systemctl.path }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ServiceInstallError);
    expect((error as Error).message).toBe('systemctl daemon-reload failed: Failed to enable unit: Access denied');
  });

  it('says when the unit cannot be written', async () => {
    await writeFile(join(dir, 'file'), '');
    await expect(installSystemdService({ unitDir: join(dir, 'file'), jobsDir: join(dir, 'jobs'), systemdRunning: false })).rejects.toThrow(/Cannot install the systemd service \(.*file\/cairn\.service, jobs in .*\): (ENOTDIR|EEXIST)/);
  });

  it.skipIf(!HAS_SYSTEMD_ANALYZE)('writes a unit systemd-analyze verify accepts without a warning, running node with cairn.js daemon JOBS', async () => {
    const { unitPath } = await installSystemdService({ unitDir: dir, jobsDir: join(dir, 'jobs'), systemdRunning: false });
    const { warnings, dump } = await verifyUnit(unitPath);
    expect(warnings).toBe('');
    expect(dump).toContain(`Command Line: ${process.execPath} ${CAIRN_BIN} daemon ${join(dir, 'jobs')}\n`);
    // Each hardening option was understood (a misspelt or unknown one would have been warned about above).
    for (const line of ['ProtectSystem: full', 'ProtectHome: read-only', 'PrivateTmp: yes', 'LockPersonality: yes', 'KillMode: mixed', 'UMask: 0077', 'IOSchedulingClass: idle']) expect(dump).toContain(line);
  });

  it.skipIf(!HAS_SYSTEMD_ANALYZE)('quotes paths with spaces and % so systemd reads them back unchanged', async () => {
    const odd = join(dir, 'my node 100%');
    await mkdir(odd);
    await symlink(process.execPath, join(odd, 'node'));
    const { unitPath } = await installSystemdService({ unitDir: dir, jobsDir: join(dir, 'job files'), nodePath: join(odd, 'node'), systemdRunning: false });
    const { warnings, dump } = await verifyUnit(unitPath);
    expect(warnings).toBe('');
    expect(dump).toContain(`Command Line: "${join(odd, 'node')}" ${CAIRN_BIN} daemon "${join(dir, 'job files')}"\n`);
  });
});

describe('renderSystemdUnit and quoteSystemdWord', () => {
  it('quotes what systemd would otherwise split or expand', () => {
    expect(quoteSystemdWord('/usr/bin/node')).toBe('/usr/bin/node');
    expect(quoteSystemdWord('/opt/my cairn/bin')).toBe('"/opt/my cairn/bin"');
    expect(quoteSystemdWord('/opt/100%')).toBe('/opt/100%%');
    expect(quoteSystemdWord('/opt/$HOME')).toBe('/opt/$$HOME');
    expect(quoteSystemdWord('/opt/a"b\\c')).toBe('"/opt/a\\"b\\\\c"');
    expect(() => quoteSystemdWord('/opt/a\nb')).toThrow(UsageError);
  });

  it('refuses relative paths', () => {
    expect(() => renderSystemdUnit('ExecStart=x\n', { nodePath: 'node', cairnBin: '/c.js', jobsDir: '/j' })).toThrow('The systemd unit needs absolute paths: nodePath is "node"');
  });
});

/** A stand-in systemctl (a real program, run as the real one would be) that records its arguments and exits with `exitCode`. */
async function recordingSystemctl(exitCode: number, stderr = ''): Promise<{ path: string; calls(): Promise<string[]> }> {
  const path = join(dir, 'systemctl');
  const log = join(dir, 'systemctl.log');
  await writeFile(log, '');
  await writeFile(path, `#!/bin/sh\necho "$*" >> '${log}'\n${stderr ? `echo '${stderr}' >&2\n` : ''}exit ${exitCode}\n`, { mode: 0o755 });
  return { path, calls: async () => (await readFile(log, 'utf8')).split('\n').filter(Boolean) };
}
