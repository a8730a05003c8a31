import { open, type FileHandle } from 'node:fs/promises';
import { TargetError } from '@cairn/core';

const REASONS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EIO: 'input/output error',
  EMFILE: 'too many open files',
};


/** Writes all of `data` at `position`. */
export async function writeAllAt(handle: FileHandle, data: Uint8Array, position: number): Promise<void> {
  for (let written = 0; written < data.length; ) {
    const { bytesWritten } = await handle.write(data, written, data.length - written, position + written);
    if (bytesWritten === 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
    written += bytesWritten;
  }
}

/** Flushes a folder's entries (a rename or a new child) to disk. */
export async function syncFolder(folder: string): Promise<void> {
  const handle = await open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** A TargetError naming the action and the path, with the system's reason in words where it has one. */
export function wrapError(err: unknown, action: string, path: string): unknown {
  if (err instanceof TargetError) return err;
  const code = errorCode(err);
  const reason = (code && REASONS[code]) ?? (err instanceof Error ? err.message : String(err));
  return new TargetError(`Cannot ${action} ${path}: ${reason}`, { cause: err });
}
