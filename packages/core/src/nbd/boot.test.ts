import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { findOvmf, firmwareFor, kvmAvailable, nbdUnixUrl, qemuArgs, qemuMemory, shellLine, type QemuMachine } from './boot.js';

const MACHINE: QemuMachine = {
  disk: 'nbd+unix:///?socket=/run/vm.sock',
  firmware: 'uefi',
  ovmf: { code: '/fw/OVMF_CODE_4M.fd', vars: '/tmp/vm/OVMF_VARS.fd' },
  memory: '2G',
  cpus: 2,
  accel: 'tcg',
  network: 'user',
};

describe('the QEMU command line of cairn boot', () => {
  it('boots a UEFI machine from the NBD export: OVMF code read-only, its own variable store, the disk on virtio', () => {
    expect(qemuArgs(MACHINE)).toEqual([
      '-machine', 'q35', '-accel', 'tcg', '-m', '2G', '-smp', '2', '-nographic',
      '-drive', 'if=pflash,format=raw,readonly=on,file=/fw/OVMF_CODE_4M.fd',
      '-drive', 'if=pflash,format=raw,file=/tmp/vm/OVMF_VARS.fd',
      '-drive', 'file=nbd+unix:///?socket=/run/vm.sock,format=raw,if=virtio,cache=writeback',
      '-nic', 'user,model=virtio-net-pci',
    ]);
  });

  it('under KVM gives the guest the host CPU; a BIOS machine has no pflash; --network none has no card', () => {
    const args = qemuArgs({ ...MACHINE, accel: 'kvm', firmware: 'bios', network: 'none' });
    expect(args.slice(0, 10)).toEqual(['-machine', 'q35', '-accel', 'kvm', '-m', '2G', '-smp', '2', '-cpu', 'host']);
    expect(args.join(' ')).not.toContain('pflash');
    expect(args.slice(-2)).toEqual(['-nic', 'none']);
  });

  it('doubles commas in paths, which QEMU would otherwise read as option separators', () => {
    const args = qemuArgs({ ...MACHINE, disk: nbdUnixUrl('/tmp/a,b/nbd.sock') });
    expect(args).toContain('file=nbd+unix:///?socket=/tmp/a,,b/nbd.sock,format=raw,if=virtio,cache=writeback');
  });

  it('refuses a UEFI machine without OVMF files', () => {
    const { ovmf: _ovmf, ...withoutOvmf } = MACHINE;
    expect(() => qemuArgs(withoutOvmf)).toThrow(/OVMF/);
  });

  it('names exports in the NBD URL: the default export is the empty name', () => {
    expect(nbdUnixUrl('/run/x.sock')).toBe('nbd+unix:///?socket=/run/x.sock');
    expect(nbdUnixUrl('/run/x.sock', 'p2')).toBe('nbd+unix:///p2?socket=/run/x.sock');
  });

  it('takes memory as MiB or with a M/G suffix, and nothing else', () => {
    expect(qemuMemory('2G')).toBe('2G');
    expect(qemuMemory('1536')).toBe('1536M');
    expect(qemuMemory('512m')).toBe('512M');
    expect(qemuMemory('4GiB')).toBe('4G');
    for (const bad of ['', '0', '2T', '-1G', '1.5G', 'lots']) expect(qemuMemory(bad), bad).toBeUndefined();
  });

  it('boots GPT disks with UEFI and MBR or bare disks with the BIOS', () => {
    expect(firmwareFor('gpt')).toBe('uefi');
    expect(firmwareFor('mbr')).toBe('bios');
    expect(firmwareFor('none')).toBe('bios');
  });

  it('prints commands a shell runs as they were given', () => {
    expect(shellLine(['qemu-system-x86_64', '-drive', 'file=nbd+unix:///?socket=/a b,format=raw', "it's"])).toBe(
      `qemu-system-x86_64 -drive 'file=nbd+unix:///?socket=/a b,format=raw' 'it'\\''s'`,
    );
  });

  it('is told by /dev/kvm whether KVM can be tried: a missing device or a plain file cannot', async () => {
    expect(kvmAvailable('/nonexistent/kvm')).toBe(false);
    expect(kvmAvailable('/etc/hostname')).toBe(false);
  });
});

describe('finding OVMF', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-ovmf-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('takes a code and variables pair of the same flash size, 4 MiB first', async () => {
    const fw = join(dir, 'OVMF');
    await mkdir(fw);
    for (const name of ['OVMF_CODE.fd', 'OVMF_VARS.fd', 'OVMF_CODE_4M.fd', 'OVMF_VARS_4M.fd']) await writeFile(join(fw, name), '');
    expect(findOvmf([join(dir, 'missing'), fw])).toEqual({ code: join(fw, 'OVMF_CODE_4M.fd'), varsTemplate: join(fw, 'OVMF_VARS_4M.fd') });
  });

  it('never pairs code with variables of another size, and finds nothing in empty folders', async () => {
    await writeFile(join(dir, 'OVMF_CODE_4M.fd'), '');
    await writeFile(join(dir, 'OVMF_VARS.fd'), '');
    expect(findOvmf([dir])).toBeUndefined();
  });
});
