import { accessSync, constants, existsSync, readFileSync, readdirSync } from 'node:fs';
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { delimiter, join, relative } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  PASSWORD_ENV,
  REPO_ROOT,
  allocatedBytes,
  backup,
  expectSuccess,
  init,
  parseJson,
  runCli,
  runCommand,
  snapshots,
  startCli,
  tempDir,
  useSuiteScope,
  useTempDir,
  writeJob,
  type CliResult,
  type RunningCli,
  type SnapshotRow,
} from './utils/index.js';

/**
 * Instant recovery: a real Debian system disk (GPT, UEFI with OVMF, GRUB, systemd; built once
 * per machine by test/fixtures/debian-vm/build.sh) is backed up, then booted by `cairn boot`
 * under software emulation (TCG) from `cairn serve` with an overlay. A unit of the guest prints
 * `CAIRN-BOOT-OK boot N` on the serial console (N counts the boots of the disk it runs on) and
 * powers the machine off.
 */
const BUILD_SCRIPT = join(REPO_ROOT, 'test/fixtures/debian-vm/build.sh');
const MARKER = /CAIRN-BOOT-OK boot (\d+) uptime ([\d.]+)\r?\n/;
const MINUTE = 60_000;
/** A minimal Debian boots in 1-2 minutes under TCG; a loaded machine gets more. */
const BOOT_MS = 8 * MINUTE;
/** From the marker to QEMU's exit: the guest's poweroff, then serve flushing the overlay. */
const POWEROFF_MS = 3 * MINUTE;

function onPath(program: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, program), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Why this machine cannot build or boot the disk at all (then the block is skipped, saying so). */
function cannotRun(): string | undefined {
  if (process.getuid?.() !== 0) return 'building the disk needs root (mmdebstrap --mode=root, chroot)';
  const missing = ['mmdebstrap', 'sgdisk', 'mkfs.ext4', 'mkfs.vfat', 'mcopy', 'qemu-system-x86_64'].filter((p) => !onPath(p));
  if (missing.length) return `missing ${missing.join(', ')} (scripts/setup.sh installs them)`;
  if (!existsSync('/usr/share/OVMF')) return 'OVMF is not installed (apt-get install ovmf)';
  return undefined;
}

const skipReason = cannotRun();

describe.skipIf(skipReason !== undefined)(`cairn boot of a Debian system disk${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  const scope = useSuiteScope();
  let job: string;
  let repository: string;
  let snapshot: SnapshotRow;

  beforeAll(async () => {
    // First run on a machine: mmdebstrap downloads and installs Debian (2-5 minutes).
    const built = await runCommand('bash', [BUILD_SCRIPT], { timeoutMs: 20 * MINUTE });
    if (built.exitCode !== 0) throw new Error(`${BUILD_SCRIPT} failed (exit ${built.exitCode}):\n${built.stderr.slice(-4000)}`);
    const disk = built.stdout.trim();
    const dir = await tempDir(scope, 'cairn-boot-');
    repository = join(dir, 'repo');
    job = await writeJob(dir, { name: 'debian-vm', source: disk, extra: { source: { type: 'volume', path: disk, mode: 'used' } } });
    await init(job);
    await backup(job);
    [snapshot] = await snapshots(job);
  }, 25 * MINUTE);

  test('--print shows the cairn serve and QEMU commands: UEFI for the GPT disk, the NBD socket, the overlay', async () => {
    const result = await runCli(['boot', job, 'latest', '--print', '--accel', 'tcg', '--memory', '1G', '--json'], { env: PASSWORD_ENV });
    expectSuccess(result);
    const printed = parseJson<{ snapshot: string; firmware: string; socket: string; overlay: string; commands: string[][] }>(result);
    expect(printed.snapshot).toBe(snapshot.id);
    expect(printed.firmware).toBe('uefi');
    const serve = printed.commands.find((c) => c.includes('serve'))!;
    expect(serve.slice(serve.indexOf('serve'))).toEqual(['serve', job, snapshot.id, '--socket', printed.socket, '--overlay', printed.overlay, '--json']);
    const qemu = printed.commands.at(-1)!;
    expect(qemu[0]).toBe('qemu-system-x86_64');
    expect(qemu.join(' ')).toContain(`-accel tcg -m 1G`);
    expect(qemu).toContain(`file=nbd+unix:///?socket=${printed.socket},format=raw,if=virtio,cache=writeback`);
    expect(qemu.some((a) => /^if=pflash,format=raw,readonly=on,file=.*OVMF_CODE/.test(a))).toBe(true);
    // Printing runs nothing: no overlay, no socket.
    expect(existsSync(printed.overlay)).toBe(false);
  });

  test(
    'boots under TCG from cairn serve with an overlay: the marker on the serial console, poweroff, the repository unchanged',
    async () => {
      const before = await repositoryFiles(repository);
      const scratch = await useTempDir('cairn-boot-scratch-');
      const overlay = join(await useTempDir('cairn-boot-overlay-'), 'vm.overlay');

      // A temporary overlay (in TMPDIR), removed afterwards: the guest's first boot of this disk.
      const first = await bootUntilMarker([], { TMPDIR: scratch });
      expect(first.boot).toBe(1);
      expect(await readdir(scratch)).toEqual([]);

      // A kept overlay: the second boot on it sees what the first wrote (its boot counter).
      expect((await bootUntilMarker(['--overlay', overlay], { TMPDIR: scratch })).boot).toBe(1);
      expect(existsSync(`${overlay}.map`)).toBe(true);
      expect(await allocatedBytes(overlay)).toBeGreaterThan(0);
      const again = await bootUntilMarker(['--overlay', overlay], { TMPDIR: scratch });
      expect(again.boot).toBe(2);
      expect(again.result.stdout).toContain(`its writes are in the overlay ${overlay}`);

      // The snapshot itself never changed: same snapshots, same files, every byte verified.
      expect(await snapshots(job)).toEqual([snapshot]);
      expect(await repositoryFiles(repository)).toEqual(before);
      const check = await runCli(['check', job, '--read-data'], { env: PASSWORD_ENV, timeoutMs: 5 * MINUTE });
      expectSuccess(check);
    },
    4 * (BOOT_MS + POWEROFF_MS),
  );

  test('a missing QEMU is exit 1 naming it; the temporary overlay and socket are removed', async () => {
    const scratch = await useTempDir('cairn-boot-scratch-');
    const result = await runCli(['boot', job, 'latest', '--accel', 'tcg', '--qemu', '/nonexistent/qemu-system-x86_64'], { env: { ...PASSWORD_ENV, TMPDIR: scratch } });
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain('cairn: /nonexistent/qemu-system-x86_64 was not found; install QEMU');
    expect(await readdir(scratch)).toEqual([]);
  });

  test('an --overlay that cairn serve refuses (a file that is not an overlay) is exit 1 with its reason; the file is untouched', async () => {
    const dir = await useTempDir('cairn-boot-overlay-');
    const notAnOverlay = join(dir, 'notes.txt');
    await writeFile(notAnOverlay, 'my notes\n');
    const result = await runCli(['boot', job, 'latest', '--accel', 'tcg', '--overlay', notAnOverlay], { env: { ...PASSWORD_ENV, TMPDIR: dir } });
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`${notAnOverlay} exists and is not a cairn overlay`);
    expect(result.stderr).toContain('cairn: cairn serve did not start: it ended with exit code 2 (its messages are above)');
    expect(await readFile(notAnOverlay, 'utf8')).toBe('my notes\n');
    expect((await readdir(dir)).sort()).toEqual(['notes.txt']);
  });

  test('SIGTERM while the machine boots stops QEMU and cairn serve, exits 0 and leaves no temporary overlay', async () => {
    const scratch = await useTempDir('cairn-boot-scratch-');
    // With --json the console goes to stderr and stdout carries only the result.
    const running = startCli(['boot', job, 'latest', '--accel', 'tcg', '--memory', '1G', '--network', 'none', '--json'], {
      env: { ...PASSWORD_ENV, TMPDIR: scratch },
      timeoutMs: BOOT_MS,
    });
    const firmwareSpoke = await waitForOutput(running.child.stderr!, /BdsDxe|GRUB/, BOOT_MS / 2);
    const children = childPids(running.child.pid!);
    running.child.kill('SIGTERM');
    const result = await running.result;
    expect(firmwareSpoke, result.stderr).toBe(true);
    expect(children).toHaveLength(2); // cairn serve and QEMU
    expect(result.exitCode, result.stderr).toBe(0);
    expect(parseJson(result)).toEqual({ snapshot: snapshot.id, accel: 'tcg', qemuExitCode: expect.any(Number), interrupted: true });
    for (const pid of children) expect(isAlive(pid), `process ${pid} still runs`).toBe(false);
    expect(await readdir(scratch)).toEqual([]);
  });

  /** Runs `cairn boot` (TCG, no network) until the guest prints its marker and QEMU exits. */
  async function bootUntilMarker(extra: string[], env: Record<string, string>): Promise<{ boot: number; result: CliResult }> {
    const started = Date.now();
    const running = startCli(['boot', job, 'latest', '--accel', 'tcg', '--memory', '1G', '--cpus', '2', '--network', 'none', ...extra], {
      env: { ...PASSWORD_ENV, ...env },
      // Only a safety net: exitWithin stops it first, with SIGTERM, so that QEMU and the server stop too.
      timeoutMs: BOOT_MS + 2 * POWEROFF_MS,
    });
    const marker = await waitForMarker(running);
    const booted = Date.now();
    const result = await exitWithin(running, marker ? POWEROFF_MS : 0);
    expect(marker, `no marker on the console:\n${result.stdout.slice(-3000)}\n${result.stderr}`).toBeDefined();
    expectSuccess(result);
    console.log(`boot ${marker![1]}: marker after ${((booted - started) / 1000).toFixed(1)} s (guest uptime ${marker![2]} s), exit after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return { boot: Number(marker![1]), result };
  }
});

/** The marker line's match, or undefined when cairn boot ends (or BOOT_MS passes) first. */
function waitForMarker(running: RunningCli): Promise<RegExpMatchArray | undefined> {
  return new Promise((resolvePromise) => {
    let seen = '';
    const timer = setTimeout(() => finish(undefined), BOOT_MS);
    function finish(match: RegExpMatchArray | undefined) {
      clearTimeout(timer);
      running.child.stdout!.off('data', onData);
      resolvePromise(match);
    }
    function onData(data: Buffer) {
      seen = (seen + data.toString('utf8')).slice(-4096);
      const match = MARKER.exec(seen);
      if (match) finish(match);
    }
    running.child.stdout!.on('data', onData);
    void running.result.then(() => finish(MARKER.exec(seen) ?? undefined));
  });
}

/** Whether `pattern` shows in the stream's output within `ms`. */
function waitForOutput(stream: NodeJS.ReadableStream, pattern: RegExp, ms: number): Promise<boolean> {
  return new Promise((resolvePromise) => {
    let seen = '';
    const timer = setTimeout(() => finish(false), ms);
    function finish(found: boolean) {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      resolvePromise(found);
    }
    function onData(data: Buffer) {
      seen = (seen + data.toString('utf8')).slice(-4096);
      if (pattern.test(seen)) finish(true);
    }
    function onEnd() {
      finish(false);
    }
    stream.on('data', onData);
    stream.on('end', onEnd);
  });
}

/** The processes `pid` started and has not reaped, from /proc (every thread's children). */
function childPids(pid: number): number[] {
  const pids: number[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    pids.push(...readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter(Boolean).map(Number));
  }
  return pids;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** cairn boot's result once it ends; after `ms`, SIGTERM to its pid (it stops QEMU and the server). */
async function exitWithin(running: RunningCli, ms: number): Promise<CliResult> {
  const timer = setTimeout(() => running.child.kill('SIGTERM'), ms);
  try {
    return await running.result;
  } finally {
    clearTimeout(timer);
  }
}

/** The repository's objects (config, keys, data, index, snapshots) by path, with size and mtime; locks come and go. */
async function repositoryFiles(root: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  async function walk(dir: string): Promise<void> {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (relative(root, path) !== 'locks') await walk(path);
      } else {
        const info = await stat(path);
        files[relative(root, path)] = `${info.size} ${info.mtimeMs}`;
      }
    }
  }
  await walk(root);
  return files;
}
