import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BootError, ExitCode, UsageError } from '../../errors.js';
import { Environment } from '../../services.js';
import { JobLoader } from '../../job/job-loader.js';
import { ShowOperation } from '../../operations/snapshots.js';
import { PluginHost } from '../../plugins/plugin-host.js';
import { findOvmf, firmwareFor, kvmAvailable, nbdUnixUrl, qemuArgs, qemuMemory, shellLine, type Accelerator, type BootFirmware, type QemuMachine } from '../../nbd/boot.js';
import { defineCommand, withJob, withSnapshot } from '../command.js';
import type { Output } from '../output.js';
import { requireVolumeManifest } from '../../repository/snapshot.js';
import { CORE_PACKAGE_ROOT } from '../../version.js';

/** This package's `cairn` executable: `cairn boot` runs `cairn serve` with it. */
const CAIRN_SCRIPT = join(CORE_PACKAGE_ROOT, 'bin', 'cairn.js');
/** How long `cairn serve` may take to open the repository and listen (a remote target can be slow). */
const SERVE_READY_MS = 120_000;
/** How long `cairn serve` gets to flush the overlay and exit after SIGTERM. */
const SERVE_STOP_MS = 60_000;
/** QEMU ending this soon under KVM, unsuccessfully, means KVM does not work here (not that the guest stopped). */
const KVM_EARLY_EXIT_MS = 15_000;
/** What QEMU prints when KVM cannot run the guest (e.g. under nested virtualisation): start again with TCG. */
const KVM_FAILURE = /KVM internal error|failed to initialize kvm|Could not access KVM|kvm run failed|KVM: entry failed/i;

export const bootCommand = defineCommand({
  command: 'boot <job> <snapshot>',
  describe: 'Run a snapshot as a virtual machine (instant recovery): QEMU boots its disk from `cairn serve`, writes go to an overlay',
  builder: (yargs) =>
    withSnapshot(withJob(yargs))
      .option('overlay', { type: 'string', describe: "Where the machine's writes go (FILE and FILE.map), kept afterwards; an existing overlay of this snapshot is continued. Default: a temporary overlay, removed when the machine stops" })
      .option('keep-overlay', { type: 'boolean', default: false, describe: 'Keep the temporary overlay when the machine stops (its path is printed)' })
      .option('memory', { type: 'string', default: '2G', describe: "The machine's memory (MiB, or with M/G suffix)" })
      .option('cpus', { type: 'number', default: 2, describe: "The machine's processors" })
      .option('accel', { choices: ['auto', 'kvm', 'tcg'] as const, default: 'auto' as const, describe: 'auto: KVM when /dev/kvm is usable, software emulation (TCG) when not or when KVM fails' })
      .option('firmware', { choices: ['auto', 'uefi', 'bios'] as const, default: 'auto' as const, describe: 'auto: UEFI (OVMF) for GPT disks, BIOS (SeaBIOS) for MBR disks' })
      .option('network', { choices: ['user', 'none'] as const, default: 'user' as const, describe: "user: QEMU's user-mode network (NAT: the guest reaches out, nothing reaches in); none: no network card" })
      .option('qemu', { type: 'string', default: 'qemu-system-x86_64', describe: 'The QEMU program' })
      .option('print', { type: 'boolean', default: false, describe: 'Print the commands (cairn serve, QEMU) instead of running them' }),
  handlesInterrupt: true,
  async run(args, { core, output, interrupt }) {
    const memory = qemuMemory(args.memory);
    if (!memory) throw new UsageError(`--memory must be a size like 2G or 1536M, not ${args.memory}`);
    if (!Number.isInteger(args.cpus) || args.cpus < 1) throw new UsageError(`--cpus must be a whole number of processors (1, 2, …), not ${args.cpus}`);
    const environment = core.get<Environment>(Environment);
    const job = await core.get(JobLoader).load(args.job);
    const { id, manifest: any } = await core.get(ShowOperation).run(job, args.snapshot);
    const manifest = requireVolumeManifest(id, any, 'cairn boot');
    const firmware: BootFirmware = args.firmware === 'auto' ? firmwareFor(manifest.layout.partitionTable.type) : args.firmware;
    const ovmf = firmware === 'uefi' ? findOvmf() : undefined;
    if (firmware === 'uefi' && !ovmf) throw new BootError('UEFI firmware (OVMF) was not found; install it (Debian: apt-get install ovmf), or boot with --firmware bios');
    const plan: BootPlan = {
      snapshot: id,
      job: resolve(environment.cwd, args.job),
      pluginsFile: core.get(PluginHost).pluginsFile,
      qemu: args.qemu,
      machine: { firmware, memory, cpus: args.cpus, network: args.network },
      ...(ovmf && { ovmf }),
      ...(args.overlay !== undefined && { overlay: resolve(environment.cwd, args.overlay) }),
    };
    if (args.print) return printPlan(plan, args.accel, environment.env, output);
    const env = environment.env;
    const result = await boot(plan, { accel: args.accel, keepOverlay: args.keepOverlay, env, cwd: environment.cwd, stderr: environment.stderr, json: output.json, interrupt });
    output.result(result, () => describeResult(result));
    return result.qemuExitCode === 0 || result.interrupted ? ExitCode.ok : ExitCode.failed;
  },
});

/** What `cairn boot` runs, before the temporary paths are chosen. */
interface BootPlan {
  /** The full snapshot id (`latest` resolved once, so the server serves the snapshot checked here). */
  snapshot: string;
  job: string;
  pluginsFile: string;
  qemu: string;
  machine: Omit<QemuMachine, 'disk' | 'ovmf' | 'accel'>;
  ovmf?: { code: string; varsTemplate: string };
  overlay?: string;
}

/** Where one run keeps its socket, its firmware variables and (by default) its overlay. */
interface BootPaths {
  socket: string;
  overlay: string;
  vars?: string;
}

function pathsIn(dir: string, plan: BootPlan): BootPaths {
  return { socket: join(dir, 'nbd.sock'), overlay: plan.overlay ?? join(dir, 'disk.overlay'), ...(plan.ovmf && { vars: join(dir, 'OVMF_VARS.fd') }) };
}

function serveArgs(plan: BootPlan, paths: BootPaths): string[] {
  return ['--plugins', plan.pluginsFile, 'serve', plan.job, plan.snapshot, '--socket', paths.socket, '--overlay', paths.overlay, '--json'];
}

function machineArgs(plan: BootPlan, paths: BootPaths, accel: Accelerator): string[] {
  const ovmf = plan.ovmf && paths.vars ? { code: plan.ovmf.code, vars: paths.vars } : undefined;
  return qemuArgs({ ...plan.machine, accel, disk: nbdUnixUrl(paths.socket), ...(ovmf && { ovmf }) });
}

/** The accelerator to try first: `auto` takes KVM when this process may use /dev/kvm. */
function firstAccel(accel: 'auto' | Accelerator): Accelerator {
  if (accel !== 'auto') return accel;
  return kvmAvailable() ? 'kvm' : 'tcg';
}

/** Large temporary files (an overlay grows with every block the guest writes) belong on disk, not in a tmpfs. */
function scratchDir(env: NodeJS.ProcessEnv): string {
  return env.TMPDIR || '/var/tmp';
}

/** `--print`: the shell commands that do what `cairn boot` does, in order. */
function printPlan(plan: BootPlan, accel: 'auto' | Accelerator, env: NodeJS.ProcessEnv, output: Output): ExitCode {
  const dir = join(scratchDir(env), `cairn-boot-${plan.snapshot.slice(0, 12)}`);
  const paths = pathsIn(dir, plan);
  const commands: string[][] = [['mkdir', '-p', dir]];
  if (plan.ovmf && paths.vars) commands.push(['cp', plan.ovmf.varsTemplate, paths.vars]);
  commands.push([process.execPath, CAIRN_SCRIPT, ...serveArgs(plan, paths)]);
  commands.push([plan.qemu, ...machineArgs(plan, paths, firstAccel(accel))]);
  const text = () =>
    [
      `# Serve snapshot ${plan.snapshot.slice(0, 12)} with an overlay, in the background; it prints one line when it listens`,
      ...commands.slice(0, -1).map((c, i) => shellLine(c) + (i === commands.length - 2 ? ' &' : '')),
      '# Then boot it (Ctrl-A X quits QEMU); afterwards stop the server: kill %1',
      shellLine(commands[commands.length - 1]!),
      '',
    ].join('\n');
  output.result({ snapshot: plan.snapshot, firmware: plan.machine.firmware, socket: paths.socket, overlay: paths.overlay, commands }, text);
  return ExitCode.ok;
}

interface BootOptions {
  accel: 'auto' | Accelerator;
  keepOverlay: boolean;
  env: NodeJS.ProcessEnv;
  cwd: string;
  stderr: NodeJS.WritableStream;
  /** With --json the console goes to stderr, so that stdout carries only the result. */
  json: boolean;
  interrupt: AbortSignal;
}

export interface BootResult {
  snapshot: string;
  accel: Accelerator;
  qemuExitCode: number | null;
  /** Stopped by SIGTERM or SIGINT to cairn (QEMU was told to quit). */
  interrupted: boolean;
  /** Where the overlay is, when it was kept (--overlay or --keep-overlay). */
  overlay?: string;
}

/** Serves the snapshot, runs QEMU on it until it stops, then stops the server and removes what was temporary. */
async function boot(plan: BootPlan, options: BootOptions): Promise<BootResult> {
  const base = scratchDir(options.env);
  await mkdir(base, { recursive: true });
  const dir = await mkdtemp(join(base, 'cairn-boot-'));
  const paths = pathsIn(dir, plan);
  const kept = plan.overlay !== undefined || options.keepOverlay;
  try {
    if (plan.ovmf && paths.vars) await copyFile(plan.ovmf.varsTemplate, paths.vars);
    const server = await startServe(plan, paths, options);
    try {
      const run = await runMachine(plan, paths, options);
      return { snapshot: plan.snapshot, ...run, ...(kept && { overlay: paths.overlay }) };
    } finally {
      await stopServe(server, options.stderr);
    }
  } finally {
    await removeTemporary(dir, paths, plan.overlay === undefined && options.keepOverlay);
  }
}

/** Removes the run's folder; a kept temporary overlay stays in it (with its map), the rest goes. */
async function removeTemporary(dir: string, paths: BootPaths, keepOverlayInDir: boolean): Promise<void> {
  if (!keepOverlayInDir) return rm(dir, { recursive: true, force: true });
  await rm(paths.socket, { force: true });
  if (paths.vars) await rm(paths.vars, { force: true });
}

/** Runs QEMU; with `auto`, a guest that KVM cannot run is started again under TCG. */
async function runMachine(plan: BootPlan, paths: BootPaths, options: BootOptions): Promise<Pick<BootResult, 'accel' | 'qemuExitCode' | 'interrupted'>> {
  const accel = firstAccel(options.accel);
  const fallback = options.accel === 'auto' && accel === 'kvm';
  const restoreTerminal = saveTerminalModes();
  const first = await runQemu(plan.qemu, machineArgs(plan, paths, accel), { ...options, watchKvm: fallback }).finally(restoreTerminal);
  if (!(fallback && first.kvmFailed) || options.interrupt.aborted) return { accel, qemuExitCode: first.exitCode, interrupted: options.interrupt.aborted };
  options.stderr.write('cairn: KVM cannot run this machine here; starting it again with software emulation (TCG), which is slower\n');
  if (plan.ovmf && paths.vars) await copyFile(plan.ovmf.varsTemplate, paths.vars);
  const second = await runQemu(plan.qemu, machineArgs(plan, paths, 'tcg'), { ...options, watchKvm: false }).finally(restoreTerminal);
  return { accel: 'tcg', qemuExitCode: second.exitCode, interrupted: options.interrupt.aborted };
}

/**
 * QEMU puts the terminal in raw mode for the console and restores it when it exits normally;
 * a QEMU that aborts (as under a failing KVM) would leave it raw. Returns what puts it back.
 */
function saveTerminalModes(): () => void {
  if (!process.stdin.isTTY) return () => {};
  const saved = spawnSync('stty', ['-g'], { stdio: ['inherit', 'pipe', 'ignore'], encoding: 'utf8' }).stdout?.trim();
  return () => {
    if (saved) spawnSync('stty', [saved], { stdio: ['inherit', 'ignore', 'ignore'] });
  };
}

interface QemuRun {
  exitCode: number | null;
  /** KVM failed the guest (QEMU said so, or ended early without success). */
  kvmFailed: boolean;
}

/**
 * Runs QEMU with the console on this process's terminal (stdin and stdout, or stderr with --json)
 * and its messages on stderr. SIGTERM or SIGINT to cairn stops QEMU.
 */
function runQemu(program: string, argv: string[], options: BootOptions & { watchKvm: boolean }): Promise<QemuRun> {
  return new Promise((resolvePromise, reject) => {
    const started = Date.now();
    const child = spawn(program, argv, { cwd: options.cwd, env: options.env, stdio: ['inherit', options.json ? 2 : 1, 'pipe'] });
    let kvmFailed = false;
    const stop = () => child.kill('SIGTERM');
    options.interrupt.addEventListener('abort', stop, { once: true });
    child.stderr!.on('data', (data: Buffer) => {
      if (options.watchKvm && !kvmFailed && KVM_FAILURE.test(data.toString('utf8'))) {
        kvmFailed = true;
        // SIGTERM, not SIGKILL: QEMU then gives the terminal its modes back.
        child.kill('SIGTERM');
      }
      // QEMU's register dump after a KVM failure is noise when TCG takes over.
      if (!kvmFailed) options.stderr.write(data);
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      options.interrupt.removeEventListener('abort', stop);
      reject(err.code === 'ENOENT' ? new BootError(`${program} was not found; install QEMU (Debian: apt-get install qemu-system-x86) or name it with --qemu`, { cause: err }) : err);
    });
    child.on('close', (code) => {
      options.interrupt.removeEventListener('abort', stop);
      const earlyFailure = options.watchKvm && code !== 0 && !options.interrupt.aborted && Date.now() - started < KVM_EARLY_EXIT_MS;
      resolvePromise({ exitCode: code, kvmFailed: kvmFailed || earlyFailure });
    });
  });
}

interface RunningServe {
  child: ChildProcess;
  exited: Promise<number | null>;
}

/** Starts `cairn serve` on the run's socket with the overlay, and waits for the line it prints when it listens. */
async function startServe(plan: BootPlan, paths: BootPaths, options: BootOptions): Promise<RunningServe> {
  const child = spawn(process.execPath, [CAIRN_SCRIPT, ...serveArgs(plan, paths)], { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolvePromise) => child.on('close', (code) => resolvePromise(code)));
  let said = false;
  child.stderr!.on('data', (data: Buffer) => {
    said = true;
    options.stderr.write(data);
  });
  try {
    await untilListening(child, exited, paths.socket);
  } catch (err) {
    child.kill('SIGTERM');
    await exited;
    throw new BootError(`cairn serve did not start: ${(err as Error).message}${said ? ' (its messages are above)' : ''}`, { cause: err });
  }
  return { child, exited };
}

/**
 * Resolves on serve's ready message (JSON naming the socket, on one line or pretty-printed);
 * rejects when serve ends first, prints something else, or takes too long.
 */
function untilListening(child: ChildProcess, exited: Promise<number | null>, socket: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    let buffered = '';
    const timer = setTimeout(() => done(new Error(`it did not listen within ${SERVE_READY_MS / 1000} s`)), SERVE_READY_MS);
    function done(err?: Error) {
      clearTimeout(timer);
      child.stdout!.removeListener('data', onData);
      if (err) reject(err);
      else resolvePromise();
    }
    function onData(data: Buffer) {
      buffered += data.toString('utf8');
      const message = readyMessage(buffered);
      if (message === undefined) return buffered.length > 65_536 ? done(new Error('it printed no ready message')) : undefined;
      done(message.listening?.socket === socket ? undefined : new Error(`it printed ${JSON.stringify(buffered.trim())}, not that it listens on ${socket}`));
    }
    child.stdout!.on('data', onData);
    void exited.then((code) => done(new Error(`it ended with exit code ${code}`)));
  });
}

/** `cairn serve --json`'s ready message, once all of it has arrived. */
function readyMessage(text: string): { listening?: { socket?: string } } | undefined {
  if (!text.trimEnd().endsWith('}')) return undefined;
  try {
    return JSON.parse(text) as { listening?: { socket?: string } };
  } catch {
    return undefined;
  }
}

/** Stops the server (SIGTERM: it closes its connections and flushes the overlay), killing it if it hangs. */
async function stopServe(server: RunningServe, stderr: NodeJS.WritableStream): Promise<void> {
  if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGTERM');
  const timer = setTimeout(() => server.child.kill('SIGKILL'), SERVE_STOP_MS);
  const code = await server.exited;
  clearTimeout(timer);
  if (code !== 0) stderr.write(`cairn: cairn serve ended with exit code ${code}\n`);
}

function describeResult(result: BootResult): string {
  const how = result.interrupted ? 'was stopped' : `stopped (QEMU exit code ${result.qemuExitCode})`;
  const lines = [`cairn: the machine of snapshot ${result.snapshot.slice(0, 12)} (${result.accel.toUpperCase()}) ${how}`];
  if (result.overlay) lines.push(`cairn: its writes are in the overlay ${result.overlay} (and ${result.overlay}.map); serve them again with: cairn serve <job> ${result.snapshot.slice(0, 12)} --overlay ${result.overlay}`);
  else lines.push('cairn: its writes were in a temporary overlay, now removed; the snapshot is unchanged');
  return lines.join('\n') + '\n';
}
