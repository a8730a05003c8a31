import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { EntryMetadata, Extent, OpenedFile, Posix } from '@cairn/core';

// O_NOFOLLOW: a file replaced by a symlink since it was listed is refused, not followed.
// O_NONBLOCK: one replaced by a FIFO does not hang the backup (no effect on regular files).
const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** Opens a regular file for reading without updating its access time where permitted (O_NOATIME needs ownership or CAP_FOWNER). */
export async function openForReading(path: Buffer, posix: Posix): Promise<OpenedFile> {
  let handle: FileHandle;
  try {
    handle = await open(path, READ_FLAGS | constants.O_NOATIME);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    handle = await open(path, READ_FLAGS);
  }
  return new OpenedRegularFile(handle, posix);
}

class OpenedRegularFile implements OpenedFile {
  constructor(
    private readonly handle: FileHandle,
    private readonly posix: Posix,
  ) {}

  async dataRanges(size: number): Promise<Extent[]> {
    return this.posix.dataRanges(this.handle.fd, size);
  }

  async read(into: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    const { bytesRead } = await this.handle.read(into, offset, length, position);
    return bytesRead;
  }

  async stat(): Promise<Pick<EntryMetadata, 'size' | 'mtimeNs' | 'ctimeNs'>> {
    const stats = await this.handle.stat({ bigint: true });
    return { size: Number(stats.size), mtimeNs: stats.mtimeNs, ctimeNs: stats.ctimeNs };
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}
