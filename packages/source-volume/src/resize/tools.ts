import { execFile } from 'node:child_process';
import { mkdtemp, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ResizeError } from '@cairn/core';

/*
 * The filesystems are resized by their own tools, on a loop device over the partition's
 * bytes (`losetup -o --sizelimit`: the kernel here scans no partition table of a loop
 * device), mounted where the tool works on a mounted filesystem (xfs_growfs, btrfs).
 */

export interface ToolResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Runs `command`; an exit code outside `okCodes` (default 0) is a ResizeError naming the command and its output. */
export function runTool(command: string, args: readonly string[], okCodes: readonly number[] = [0]): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { maxBuffer: 16 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' } }, (err, stdout, stderr) => {
      const exitCode = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      if (err && typeof err.code !== 'number') {
        reject(new ResizeError(`Cannot run ${command}: ${err.message}${(err as NodeJS.ErrnoException).code === 'ENOENT' ? ' (is it installed?)' : ''}`, { cause: err }));
        return;
      }
      if (!okCodes.includes(exitCode)) {
        const output = `${stderr}\n${stdout}`.trim().split('\n').slice(-6).join('\n');
        reject(new ResizeError(`${command} ${args.join(' ')} failed (exit ${exitCode}): ${output}`));
        return;
      }
      resolve({ stdout, stderr, exitCode });
    });
  });
}

/** Runs `body` with a loop device over `length` bytes of `path` at `offset`, detached afterwards whatever happens. */
export async function withLoopDevice<T>(path: string, offset: number, length: number, body: (device: string) => Promise<T>): Promise<T> {
  const { stdout } = await runTool('losetup', ['-f', '--show', '-o', String(offset), '--sizelimit', String(length), path]);
  const device = stdout.trim();
  if (!/^\/dev\/loop\d+$/.test(device)) throw new ResizeError(`losetup printed "${device}", not a loop device`);
  try {
    return await body(device);
  } finally {
    await runTool('losetup', ['-d', device]).catch(() => undefined);
  }
}

/** Runs `body` with `device` mounted on a fresh temporary folder, unmounted and removed afterwards. */
export async function withMount<T>(device: string, body: (mountPoint: string) => Promise<T>): Promise<T> {
  const mountPoint = await mkdtemp(join(tmpdir(), 'cairn-resize-'));
  try {
    await runTool('mount', [device, mountPoint]);
    try {
      return await body(mountPoint);
    } finally {
      await runTool('umount', [mountPoint]);
    }
  } finally {
    await rmdir(mountPoint).catch(() => undefined);
  }
}
