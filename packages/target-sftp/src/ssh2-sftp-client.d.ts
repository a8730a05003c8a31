// The few parts of ssh2-sftp-client (and the ssh2 SFTP channel it wraps) that this plugin uses.
// The package ships no types; these follow its README and ssh2's SFTP documentation.
declare module 'ssh2-sftp-client' {
  import type { EventEmitter } from 'node:events';

  export interface FileAttributes {
    mode: number;
    size: number;
    uid: number;
    gid: number;
    atime: number;
    mtime: number;
  }

  export interface DirectoryEntry {
    filename: string;
    longname: string;
    attrs: FileAttributes;
  }

  export type Callback<T = void> = (err: (Error & { code?: unknown }) | undefined | null, result: T) => void;

  /** ssh2's raw SFTP channel. Requests may be issued concurrently; replies come in any order. */
  export interface SFTPWrapper extends EventEmitter {
    open(path: string, flags: string, attrs: { mode?: number }, cb: Callback<Buffer>): void;
    close(handle: Buffer, cb: Callback): void;
    read(handle: Buffer, buffer: Buffer, offset: number, length: number, position: number, cb: (err: (Error & { code?: unknown }) | undefined | null, bytesRead: number) => void): void;
    write(handle: Buffer, buffer: Buffer, offset: number, length: number, position: number, cb: Callback): void;
    fstat(handle: Buffer, cb: Callback<FileAttributes>): void;
    stat(path: string, cb: Callback<FileAttributes>): void;
    readdir(path: string, cb: Callback<DirectoryEntry[]>): void;
    mkdir(path: string, attrs: { mode?: number }, cb: Callback): void;
    unlink(path: string, cb: Callback): void;
    rename(from: string, to: string, cb: Callback): void;
    ext_openssh_rename(from: string, to: string, cb: Callback): void;
    ext_openssh_fsync(handle: Buffer, cb: Callback): void;
    /** Server extensions by name (private in ssh2, stable since 1.0). */
    _extensions?: Record<string, string>;
    /** Largest read and write payloads the server accepts (private in ssh2). */
    _maxReadLen?: number;
    _maxWriteLen?: number;
  }

  export interface ConnectOptions {
    host: string;
    port: number;
    username: string;
    password?: string;
    privateKey?: Buffer;
    passphrase?: string;
    agent?: string;
    readyTimeout?: number;
    keepaliveInterval?: number;
    keepaliveCountMax?: number;
    hostVerifier?: (key: Buffer) => boolean;
    algorithms?: Record<string, unknown>;
    sock?: unknown;
    retries?: number;
    debug?: (message: string) => void;
  }

  export interface EventCallbacks {
    error?: (err: Error) => void;
    end?: () => void;
    close?: () => void;
  }

  export default class Client {
    constructor(name?: string, callbacks?: EventCallbacks);
    /** The ssh2 Client underneath. */
    readonly client: EventEmitter & { end(): void; destroy(): void; setNoDelay(noDelay: boolean): unknown };
    sftp: SFTPWrapper | undefined;
    connect(options: ConnectOptions): Promise<SFTPWrapper>;
    end(): Promise<boolean>;
  }
}
