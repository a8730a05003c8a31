import { ResizeError } from '@cairn/core';
import { runTool, withMount } from './tools.js';

/** What resizes one kind of filesystem, on a device holding exactly it. */
export interface FilesystemResizer {
  /** The command named in `restore --json` (`resize2fs`, …). */
  readonly tool: string;
  /** Grows the filesystem to fill its device. */
  grow(device: string): Promise<void>;
  /** The smallest size, in bytes, the filesystem can be shrunk to, with a margin; undefined: it cannot shrink. */
  minimumSize?(device: string): Promise<number>;
  /** Shrinks the filesystem to at most `size` bytes. */
  shrink?(device: string, size: number): Promise<void>;
}

const MiB = 1024 * 1024;

/**
 * The tools' own minimum is an estimate made for a filesystem shrunk once, with nothing
 * written afterwards (resize2fs -P under-reports now and then): a tenth more, and 8 MiB.
 */
function withMargin(bytes: number): number {
  return Math.ceil((bytes * 1.1 + 8 * MiB) / MiB) * MiB;
}

/** e2fsck -f: resize2fs refuses a filesystem not checked since it was last mounted. Exit 1 (errors fixed) is fine. */
async function checkExt(device: string): Promise<void> {
  await runTool('e2fsck', ['-f', '-y', device], [0, 1]);
}

const ext: FilesystemResizer = {
  tool: 'resize2fs',
  async grow(device) {
    await checkExt(device);
    await runTool('resize2fs', [device]);
  },
  async minimumSize(device) {
    await checkExt(device);
    const estimate = /minimum size of the filesystem:\s*(\d+)/i.exec((await runTool('resize2fs', ['-P', device])).stdout);
    const blockSize = /^Block size:\s*(\d+)/m.exec((await runTool('dumpe2fs', ['-h', device])).stdout);
    if (!estimate || !blockSize) throw new ResizeError(`resize2fs -P or dumpe2fs -h on ${device} printed no minimum size or block size`);
    return withMargin(Number(estimate[1]) * Number(blockSize[1]));
  },
  async shrink(device, size) {
    await runTool('resize2fs', [device, `${Math.floor(size / 1024)}K`]);
  },
};

/* ntfsresize: -f twice never asks, also when the volume is marked for a check (as a resize leaves it). */
const ntfs: FilesystemResizer = {
  tool: 'ntfsresize',
  async grow(device) {
    await runTool('ntfsresize', ['-f', '-f', '--no-progress-bar', device]);
  },
  async minimumSize(device) {
    const info = (await runTool('ntfsresize', ['--info', '-f', '-f', '--no-progress-bar', device])).stdout;
    const minimum = /You might resize at (\d+) bytes/.exec(info);
    if (!minimum) throw new ResizeError(`ntfsresize --info on ${device} printed no minimum size: ${info.trim().split('\n').slice(-3).join(' ')}`);
    return withMargin(Number(minimum[1]));
  },
  async shrink(device, size) {
    await runTool('ntfsresize', ['-f', '-f', '--no-progress-bar', '--size', String(size), device]);
  },
};

const btrfs: FilesystemResizer = {
  tool: 'btrfs filesystem resize',
  async grow(device) {
    await withMount(device, (mountPoint) => runTool('btrfs', ['filesystem', 'resize', 'max', mountPoint]));
  },
  async minimumSize(device) {
    const output = await withMount(device, async (mountPoint) => (await runTool('btrfs', ['inspect-internal', 'min-dev-size', mountPoint])).stdout);
    const minimum = /^(\d+) bytes/m.exec(output);
    if (!minimum) throw new ResizeError(`btrfs inspect-internal min-dev-size on ${device} printed no size: ${output.trim()}`);
    // The kernel refuses to resize a Btrfs device below 256 MiB (EINVAL), whatever it holds.
    return Math.max(withMargin(Number(minimum[1])), 256 * MiB);
  },
  async shrink(device, size) {
    await withMount(device, (mountPoint) => runTool('btrfs', ['filesystem', 'resize', String(Math.floor(size / 4096) * 4096), mountPoint]));
  },
};

/** XFS grows only (mounted); it has no shrink at all. */
const xfs: FilesystemResizer = {
  tool: 'xfs_growfs',
  async grow(device) {
    await withMount(device, (mountPoint) => runTool('xfs_growfs', [mountPoint]));
  },
};

const RESIZERS: Record<string, FilesystemResizer> = { ext2: ext, ext3: ext, ext4: ext, ntfs, btrfs, xfs };

/** Filesystems cairn can grow; FAT has no resizing tool here. */
export function resizerFor(filesystem: string | undefined): FilesystemResizer | undefined {
  return filesystem === undefined ? undefined : RESIZERS[filesystem];
}

export function canShrink(filesystem: string | undefined): boolean {
  return resizerFor(filesystem)?.shrink !== undefined;
}
