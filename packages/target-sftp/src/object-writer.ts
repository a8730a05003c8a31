import { posix } from 'node:path';
import type { SFTPWrapper } from 'ssh2-sftp-client';
import { TargetError, type ObjectWriter } from '@cairn/core';
import type { SftpConnection } from './connection.js';
import { SFTP_NO_SUCH_FILE, call, statusOf } from './sftp-calls.js';

/** Which connection a writer's operations go to while it stays alive (its file handle lives there). */
export interface Pin {
  connection?: SftpConnection;
}

/** What an SftpObjectWriter needs of its target. */
export interface WriterHost {
  /** Runs `operation` on the pinned connection, or on a new one (then pinned) after it dropped, retrying as the target does. */
  run<T>(verb: string, path: string, operation: (sftp: SFTPWrapper, connection: SftpConnection) => Promise<T>, pin: Pin): Promise<T>;
  ensureFolder(sftp: SFTPWrapper, folder: string): Promise<void>;
  /** Writes all of `data` at `position` of the open file, with requests pipelined; settles once the server acknowledged every one. */
  writeAt(connection: SftpConnection, handle: Buffer, data: Buffer, position: number): Promise<void>;
  /** The path of the object `key` (throws for an invalid key). */
  pathOf(key: string): string;
  /** Moves `temp` to `path` (making its folder), replacing what is there. */
  place(sftp: SFTPWrapper, temp: string, path: string): Promise<void>;
  /** Removes `temp` once a connection works again. */
  removeLater(temp: string): void;
  describe(path: string): string;
}

const FILE_MODE = 0o600;

/** Bytes of written pieces a writer keeps, unacknowledged, before `write` waits for the server. */
export const UNACKNOWLEDGED_BYTES = 2 * 1024 * 1024;

/** A piece on its way: a copy of its bytes, kept until the server acknowledged all of them. */
interface Piece {
  /** The whole buffer the copy is in (a spare may be longer than the piece). */
  buffer: Buffer;
  bytes: Buffer;
  sent: Promise<void>;
}

/**
 * An object uploaded piece by piece to a temp file and renamed into place on commit (see
 * Target.openWriter): a backup then holds a few megabytes of each pack instead of whole packs
 * waiting for their upload. `write` copies its piece and sends it, waiting only while more than
 * UNACKNOWLEDGED_BYTES are unacknowledged, so the server stays busy while the next piece fills.
 * Each piece is kept until the server acknowledged all of it: when the connection drops, the
 * writer opens the temp file again on a new connection and the unacknowledged pieces are sent
 * again at their offsets, so the upload goes on where it was (what was acknowledged is in the
 * file, and writes at offsets do not depend on their order).
 */
export class SftpObjectWriter implements ObjectWriter {
  readonly #pin: Pin = {};
  /** The temp file's handle on each connection it was opened on (a second only after a reconnect). */
  readonly #handles = new Map<SftpConnection, Promise<Buffer>>();
  #pieces: Piece[] = [];
  #unacknowledged = 0;
  /** Copies of acknowledged pieces, used again. */
  readonly #spare: Buffer[] = [];
  #failure: { error: unknown } | undefined;
  /** An open that created the file may have reached the server. */
  #attempted = false;
  /** The file exists: opening it again must not truncate it. */
  #created = false;
  #position = 0;
  #ended = false;

  constructor(
    readonly temp: string,
    private readonly host: WriterHost,
  ) {}

  async write(data: Uint8Array): Promise<void> {
    this.#throwIfFailed();
    const buffer = this.#bufferFor(data.length);
    const bytes = buffer.subarray(0, data.length);
    bytes.set(data);
    const position = this.#position;
    this.#position += bytes.length;
    const piece: Piece = { buffer, bytes, sent: this.#send(bytes, position) };
    this.#pieces.push(piece);
    this.#unacknowledged += bytes.length;
    piece.sent.then(
      () => this.#acknowledged(piece),
      (error: unknown) => (this.#failure ??= { error }),
    );
    while (this.#unacknowledged > UNACKNOWLEDGED_BYTES && !this.#failure) await this.#pieces[0]!.sent.catch(() => undefined);
    this.#throwIfFailed();
  }

  async commit(key: string): Promise<void> {
    try {
      const path = this.host.pathOf(key);
      await Promise.all(this.#pieces.map((piece) => piece.sent));
      this.#throwIfFailed();
      await this.host.run('write', this.temp, async (sftp, connection) => {
        const handle = await this.#handleOn(sftp, connection);
        if (sftp._extensions?.['fsync@openssh.com'] !== undefined) await call((cb) => sftp.ext_openssh_fsync(handle, cb));
      }, this.#pin);
      let attempt = 0;
      await this.host.run('write', this.temp, async (sftp) => {
        attempt++;
        this.#closeHandles();
        try {
          await this.host.place(sftp, this.temp, path);
        } catch (err) {
          // A rename that went through before the connection dropped leaves nothing to rename.
          if (attempt > 1 && statusOf(err) === SFTP_NO_SUCH_FILE && (await this.#placed(sftp, path))) return;
          throw err;
        }
      }, this.#pin);
      this.#ended = true;
    } catch (err) {
      await this.abort();
      throw err;
    }
  }

  async abort(): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    await Promise.allSettled(this.#pieces.map((piece) => piece.sent));
    if (!this.#attempted) return;
    this.#closeHandles();
    const connection = this.#pin.connection;
    if (connection?.alive) {
      const removed = await call((cb) => connection.sftp.unlink(this.temp, cb)).then(
        () => true,
        (err: unknown) => statusOf(err) === SFTP_NO_SUCH_FILE,
      );
      if (removed) return;
    }
    this.host.removeLater(this.temp);
  }

  /** Sends one piece, again on a new connection when this one drops (the target's retries). */
  #send(bytes: Buffer, position: number): Promise<void> {
    return this.host.run('write', this.temp, async (sftp, connection) => this.host.writeAt(connection, await this.#handleOn(sftp, connection), bytes, position), this.#pin);
  }

  #acknowledged(piece: Piece): void {
    this.#pieces.splice(this.#pieces.indexOf(piece), 1);
    this.#unacknowledged -= piece.bytes.length;
    this.#spare.push(piece.buffer);
  }

  /** A buffer for a copy of `length` bytes (the caller may use its memory again once `write` settles): a spare one when it fits. */
  #bufferFor(length: number): Buffer {
    const spare = this.#spare.pop();
    return spare !== undefined && spare.length >= length ? spare : Buffer.allocUnsafeSlow(length);
  }

  #throwIfFailed(): void {
    if (this.#failure) throw this.#failure.error;
  }

  /** The handle of the temp file on `connection`, opened (or at first created) there once for all the pieces sent on it. */
  #handleOn(sftp: SFTPWrapper, connection: SftpConnection): Promise<Buffer> {
    let handle = this.#handles.get(connection);
    if (handle === undefined) {
      const opening = this.#openOn(sftp);
      this.#handles.set(connection, opening);
      opening.catch(() => {
        // Opened again by the next attempt.
        if (this.#handles.get(connection) === opening) this.#handles.delete(connection);
      });
      handle = opening;
    }
    return handle;
  }

  async #openOn(sftp: SFTPWrapper): Promise<Buffer> {
    if (!this.#created) await this.host.ensureFolder(sftp, posix.dirname(this.temp));
    this.#attempted = true;
    try {
      const handle = await call<Buffer>((cb) => sftp.open(this.temp, this.#created ? 'r+' : 'w', { mode: FILE_MODE }, cb));
      this.#created = true;
      return handle;
    } catch (err) {
      if (this.#created && statusOf(err) === SFTP_NO_SUCH_FILE) {
        throw new TargetError(`Cannot write ${this.host.describe(this.temp)}: the temporary file vanished while the connection was re-established`, { cause: err });
      }
      throw err;
    }
  }

  /** Closes the handles on live connections, not waiting: sftp-server handles a channel's requests in order, so later ones see it closed. */
  #closeHandles(): void {
    for (const [connection, handle] of this.#handles) {
      if (connection.alive) void handle.then((open) => connection.sftp.close(open, () => undefined), () => undefined);
    }
    this.#handles.clear();
  }

  /** Whether the file at `path` is this writer's (its size is what was written). */
  async #placed(sftp: SFTPWrapper, path: string): Promise<boolean> {
    try {
      const attrs = await call<{ size: number }>((cb) => sftp.stat(path, cb));
      return attrs.size === this.#position;
    } catch {
      return false;
    }
  }
}
