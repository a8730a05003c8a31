import { constants } from 'node:fs';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { DIRECT_IO_ALIGNMENT, directIoSpan, type ObjectWriter } from '@cairn/core';
import { errorCode, wrapError, writeAllAt } from './file-io.js';

const FILE_MODE = 0o600;
const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL;

export interface WriterOptions {
  /** Try direct I/O (the target has not seen its filesystem refuse it). */
  direct: boolean;
  /** Called when the filesystem refuses direct I/O: the target stops trying it. */
  refusedDirect: () => void;
  /** Moves the complete, durable file to where `key` lives. */
  commit: (key: string) => Promise<void>;
}

/**
 * A new file written piece by piece at `tempPath` (see Target.openWriter). Pieces that start
 * on a block boundary in page-aligned memory go through an O_DIRECT handle (a short last piece
 * is written padded to whole blocks, and the file cut to its length on commit); any other piece
 * through a second, ordinary handle on the same file.
 */
export class LocalObjectWriter implements ObjectWriter {
  #direct: FileHandle | undefined;
  #buffered: FileHandle | undefined;
  /** Whether a handle created the file (a second one must not: O_EXCL). */
  #created = false;
  #position = 0;
  #ended = false;

  private constructor(
    private readonly tempPath: string,
    private readonly options: WriterOptions,
  ) {}

  static async create(tempPath: string, options: WriterOptions): Promise<LocalObjectWriter> {
    const writer = new LocalObjectWriter(tempPath, options);
    try {
      if (options.direct) writer.#direct = await writer.#openDirect();
      // The umask may have taken bits off the mode given to open; set it exactly.
      await (writer.#direct ?? (await writer.#bufferedHandle())).chmod(FILE_MODE);
      return writer;
    } catch (err) {
      await writer.abort();
      throw err;
    }
  }

  async write(data: Uint8Array): Promise<void> {
    try {
      const span = this.#direct && this.#position % DIRECT_IO_ALIGNMENT === 0 ? directIoSpan(data) : undefined;
      if (!span || !(await this.#writeDirect(span))) await writeAllAt(await this.#bufferedHandle(), data, this.#position);
      this.#position += data.length;
    } catch (err) {
      throw wrapError(err, 'write', this.tempPath);
    }
  }

  async commit(key: string): Promise<void> {
    try {
      const handle = this.#direct ?? (await this.#bufferedHandle());
      // A padded last piece wrote past the end; fsync of either handle flushes the whole file.
      await handle.truncate(this.#position);
      await handle.sync();
      await this.#close();
      await this.options.commit(key);
      this.#ended = true;
    } catch (err) {
      await this.abort();
      throw wrapError(err, 'write', this.tempPath);
    }
  }

  async abort(): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    await this.#close().catch(() => undefined);
    await unlink(this.tempPath).catch(() => undefined);
  }

  /** Writes whole blocks with O_DIRECT; false (nothing written) when the filesystem refuses it, which it then is never asked again. */
  async #writeDirect(span: Uint8Array): Promise<boolean> {
    try {
      await writeAllAt(this.#direct!, span, this.#position);
      return true;
    } catch (err) {
      if (errorCode(err) !== 'EINVAL') throw err;
      this.options.refusedDirect();
      await this.#direct!.close();
      this.#direct = undefined;
      return false;
    }
  }

  /** An O_DIRECT handle on the new file, or undefined when the filesystem refuses one (ramfs, some FUSE filesystems). */
  async #openDirect(): Promise<FileHandle | undefined> {
    try {
      const handle = await open(this.tempPath, CREATE_FLAGS | constants.O_DIRECT, FILE_MODE);
      this.#created = true;
      return handle;
    } catch (err) {
      if (errorCode(err) !== 'EINVAL') throw err;
      this.options.refusedDirect();
      // Some filesystems create the file before refusing O_DIRECT.
      await unlink(this.tempPath).catch(() => undefined);
      return undefined;
    }
  }

  async #bufferedHandle(): Promise<FileHandle> {
    this.#buffered ??= await open(this.tempPath, this.#created ? constants.O_WRONLY : CREATE_FLAGS, FILE_MODE);
    this.#created = true;
    return this.#buffered;
  }

  async #close(): Promise<void> {
    const handles = [this.#direct, this.#buffered];
    this.#direct = this.#buffered = undefined;
    for (const handle of handles) await handle?.close();
  }
}
