import { access, mkdir, realpath } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, runCommand } from './exec.js';
import type { Scope } from './scope.js';

/** Whether this machine lets the tests create loop devices (root and /dev/loop-control). */
export async function loopDevicesAvailable(): Promise<boolean> {
  if (process.getuid?.() !== 0) return false;
  try {
    await access('/dev/loop-control');
    return true;
  } catch {
    return false;
  }
}

/**
 * Attaches `file` to a free loop device (`losetup -f --show`) and returns the device path.
 * The scope detaches exactly that device at teardown, whatever happened in between.
 */
export async function attachLoop(scope: Scope, file: string, options: { readOnly?: boolean } = {}): Promise<string> {
  const backing = await realpath(file);
  const device = (await run('losetup', ['-f', '--show', ...(options.readOnly ? ['-r'] : []), backing])).trim();
  if (!/^\/dev\/loop\d+$/.test(device)) throw new Error(`losetup printed "${device}", not a loop device`);
  scope.defer(`losetup -d ${device}`, () => detachLoop(device, backing));
  return device;
}

async function detachLoop(device: string, file: string): Promise<void> {
  // Only detach the device if it still serves our file: never another user's device.
  const status = await runCommand('losetup', ['--list', '--noheadings', '--output', 'BACK-FILE', device]);
  if (status.exitCode !== 0 || !status.stdout.includes(file)) return;
  for (let attempt = 0; ; attempt++) {
    const result = await runCommand('losetup', ['-d', device]);
    if (result.exitCode === 0) return;
    // Right after an unmount the kernel may still hold the device for a moment.
    if (attempt >= 20) throw new Error(`losetup -d ${device} failed: ${result.stderr.trim()}`);
    await sleep(100);
  }
}

/** Mounts `device` on `mountPoint` (created if needed); the scope unmounts it at teardown. */
export async function mountDevice(scope: Scope, device: string, mountPoint: string, options: string[] = []): Promise<void> {
  await mkdir(mountPoint, { recursive: true });
  await run('mount', [...(options.length ? ['-o', options.join(',')] : []), device, mountPoint]);
  scope.defer(`umount ${mountPoint}`, () => unmount(mountPoint));
}

/** Unmounts `mountPoint`; one that is not mounted (any more) is fine. */
export async function unmount(mountPoint: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const result = await runCommand('umount', [mountPoint]);
    if (result.exitCode === 0) return;
    if (/not mounted/.test(result.stderr)) return;
    if (attempt >= 20) throw new Error(`umount ${mountPoint} failed: ${result.stderr.trim()}`);
    await sleep(100);
  }
}

/** Flushes a block device's buffers so that reads through another path see the writes. */
export async function flushDevice(device: string): Promise<void> {
  await run('blockdev', ['--flushbufs', device]);
}
