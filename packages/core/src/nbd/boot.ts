import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The QEMU side of `cairn boot`: which firmware a snapshot needs, where OVMF lives, and the
 * command line that boots a disk served over NBD. Pure functions (apart from looking for
 * files), so that `cairn boot --print` shows exactly what `cairn boot` runs.
 */

/** UEFI (OVMF) for GPT disks, the PC BIOS (SeaBIOS, QEMU's default) for MBR disks. */
export type BootFirmware = 'uefi' | 'bios';
/** KVM where the host allows it; TCG (software emulation) everywhere. */
export type Accelerator = 'kvm' | 'tcg';
/** `user`: QEMU's user-mode network (NAT, no setup, nothing reaches the guest); `none`: no network card. */
export type BootNetwork = 'user' | 'none';

/** The firmware a disk with this partition table boots with. */
export function firmwareFor(partitionTable: 'none' | 'mbr' | 'gpt'): BootFirmware {
  return partitionTable === 'gpt' ? 'uefi' : 'bios';
}

/** OVMF's code (read-only) and the template of its variable store (copied per machine: the guest writes it). */
export interface OvmfFiles {
  code: string;
  varsTemplate: string;
}

/** Where Debian, Ubuntu, Fedora and Arch install OVMF; pairs of the same flash size only. */
const OVMF_DIRS = ['/usr/share/OVMF', '/usr/share/edk2/ovmf', '/usr/share/edk2/x64', '/usr/share/edk2-ovmf/x64', '/usr/share/qemu'];
const OVMF_PAIRS: ReadonlyArray<readonly [string, string]> = [
  ['OVMF_CODE_4M.fd', 'OVMF_VARS_4M.fd'],
  ['OVMF_CODE.fd', 'OVMF_VARS.fd'],
  ['OVMF_CODE.4m.fd', 'OVMF_VARS.4m.fd'],
  ['edk2-x86_64-code.fd', 'edk2-i386-vars.fd'],
];

/** The first OVMF installation found (or in `dirs`), or undefined when there is none. */
export function findOvmf(dirs: readonly string[] = OVMF_DIRS): OvmfFiles | undefined {
  for (const dir of dirs) {
    for (const [code, vars] of OVMF_PAIRS) {
      const pair = { code: join(dir, code), varsTemplate: join(dir, vars) };
      if (existsSync(pair.code) && existsSync(pair.varsTemplate)) return pair;
    }
  }
  return undefined;
}

/** Whether this process may open /dev/kvm (it may still fail inside, e.g. under nested virtualisation). */
export function kvmAvailable(device = '/dev/kvm'): boolean {
  try {
    if (!statSync(device).isCharacterDevice()) return false;
    accessSync(device, constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** The URL QEMU, qemu-img and libnbd's tools take for an export on a Unix socket (`''` is the default export). */
export function nbdUnixUrl(socket: string, exportName = ''): string {
  return `nbd+unix:///${encodeURIComponent(exportName)}?socket=${socket}`;
}

export interface QemuMachine {
  /** The NBD URL of the whole disk, writable (served with an overlay). */
  disk: string;
  firmware: BootFirmware;
  /** With UEFI: OVMF's code and the machine's own copy of the variable store. */
  ovmf?: { code: string; vars: string };
  /** QEMU's -m: MiB, or with a M/G suffix. */
  memory: string;
  cpus: number;
  accel: Accelerator;
  network: BootNetwork;
}

/** QEMU's arguments (after the program) for the machine: no display, the serial console on stdio. */
export function qemuArgs(machine: QemuMachine): string[] {
  const args = ['-machine', 'q35', '-accel', machine.accel, '-m', machine.memory, '-smp', String(machine.cpus)];
  // Under KVM the guest gets the host's CPU; TCG emulates QEMU's default model, which every x86-64 kernel runs on.
  if (machine.accel === 'kvm') args.push('-cpu', 'host');
  // -nographic: serial port and QEMU's monitor multiplexed on the terminal (Ctrl-A X quits, Ctrl-A C the monitor).
  args.push('-nographic');
  if (machine.firmware === 'uefi') {
    if (!machine.ovmf) throw new Error('a UEFI machine needs the OVMF files');
    args.push('-drive', `if=pflash,format=raw,readonly=on,file=${optionValue(machine.ovmf.code)}`);
    args.push('-drive', `if=pflash,format=raw,file=${optionValue(machine.ovmf.vars)}`);
  }
  args.push('-drive', `file=${optionValue(machine.disk)},format=raw,if=virtio,cache=writeback`);
  args.push(...(machine.network === 'user' ? ['-nic', 'user,model=virtio-net-pci'] : ['-nic', 'none']));
  return args;
}

/** A value inside a QEMU option list, where a comma separates options and `,,` is a literal comma. */
function optionValue(value: string): string {
  return value.replaceAll(',', ',,');
}

/** QEMU's -m value from a size like 2G, 1536M or 1024 (MiB); undefined when it is not one. */
export function qemuMemory(text: string): string | undefined {
  const match = /^\s*(\d+)\s*([MG])?(?:i?B)?\s*$/i.exec(text);
  if (!match || Number(match[1]) === 0) return undefined;
  return `${match[1]}${(match[2] ?? 'M').toUpperCase()}`;
}

/** One shell word: left bare when it is safe, single-quoted otherwise. */
export function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** A command line for a shell: the words quoted as needed. */
export function shellLine(argv: readonly string[]): string {
  return argv.map(shellWord).join(' ');
}
