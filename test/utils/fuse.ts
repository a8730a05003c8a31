import { spawn } from 'node:child_process';
import { accessSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { REPO_ROOT } from './cli.js';
import { unmount } from './loop.js';
import type { Scope } from './scope.js';

/** The FUSE file system of `test/fixtures/faulty-fuse`: one image file whose reads fail where asked. */
const FAULTY_IMAGE_SCRIPT = join(REPO_ROOT, 'test/fixtures/faulty-fuse/faulty_image.py');
/** Debian's python3-fusepy installs for the system Python, not for any other python3 on PATH. */
const SYSTEM_PYTHON = '/usr/bin/python3';

export interface FaultyImageOptions {
  /** Byte ranges whose reads fail with EIO: a read touching one fails as a whole, as a disk fails a request. */
  bad?: ReadonlyArray<{ offset: number; length: number }>;
  /** Reads find the end of the file here although its size says more: a file truncated while it is read. */
  endsAt?: number;
  /** The file's name in the mount; default `disk.img`. */
  name?: string;
}

/** Why FUSE images cannot be served here (no /dev/fuse), or undefined when they can. */
export function fuseUnavailable(): string | undefined {
  try {
    accessSync('/dev/fuse');
    accessSync(SYSTEM_PYTHON);
    return undefined;
  } catch (err) {
    return `FUSE tests need /dev/fuse and ${SYSTEM_PYTHON} with python3-fusepy (bash scripts/setup.sh installs it): ${(err as Error).message}`;
  }
}

/**
 * Serves `image` as `<mountPoint>/disk.img` through a small FUSE file system whose reads fail
 * as `options` say, and returns that file's path. The scope unmounts it and then stops the
 * process serving it (by its pid) at teardown.
 */
export async function mountFaultyImage(scope: Scope, image: string, mountPoint: string, options: FaultyImageOptions = {}): Promise<string> {
  const unavailable = fuseUnavailable();
  if (unavailable) throw new Error(unavailable);
  await mkdir(mountPoint, { recursive: true });
  const name = options.name ?? 'disk.img';
  const args = [FAULTY_IMAGE_SCRIPT, image, mountPoint, '--name', name];
  for (const { offset, length } of options.bad ?? []) args.push('--bad', `${offset}:${length}`);
  if (options.endsAt !== undefined) args.push('--ends-at', String(options.endsAt));
  const child = spawn(SYSTEM_PYTHON, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const stderr: Buffer[] = [];
  child.stderr!.on('data', (d: Buffer) => stderr.push(d));
  // Unmounting ends the process; a process still there afterwards is stopped by its pid.
  scope.defer(`stop the FUSE process ${child.pid}`, async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    if (await Promise.race([exited.then(() => true), sleep(5000).then(() => false)])) return;
    child.kill('SIGKILL');
    await exited;
  });
  scope.defer(`umount ${mountPoint} (FUSE)`, () => unmount(mountPoint));

  const ready = await new Promise<boolean>((resolve) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      if (out.includes('ready\n')) resolve(true);
      else if (out.includes('not ready')) resolve(false);
    });
    child.on('close', () => resolve(false));
    child.on('error', () => resolve(false));
  });
  if (!ready) {
    throw new Error(`${SYSTEM_PYTHON} ${args.join(' ')} did not serve the image: ${Buffer.concat(stderr).toString('utf8').trim() || `exit ${child.exitCode}`}`);
  }
  return join(mountPoint, name);
}
