/**
 * Every error cairn raises on purpose. The CLI maps `exitCode` to the process exit code
 * and prints `message` without a stack trace; anything that is not a CairnError is a bug
 * and is reported as such.
 */
export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  /** The snapshot was saved but lacks data that could not be read (`backup --rescue` over unreadable sectors). */
  incomplete: 3,
  noRepository: 10,
  locked: 11,
  wrongPassword: 12,
  damage: 13,
  /** Stopped by SIGINT (Ctrl-C): 128 + 2, as shells report it. */
  interrupted: 130,
  /** Stopped by SIGTERM: 128 + 15. */
  terminated: 143,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export class CairnError extends Error {
  readonly code: string = 'CAIRN_ERROR';
  readonly exitCode: ExitCode = ExitCode.failed;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The command was stopped by a signal; the locks it held were released and nothing it finished is lost. */
export class InterruptedError extends CairnError {
  override readonly code = 'CAIRN_INTERRUPTED';
  override readonly exitCode: ExitCode;
  constructor(signal: string) {
    super(`Stopped by ${signal}; the repository stays consistent (what a backup stored without a snapshot is reused by the next one)`);
    this.exitCode = signal === 'SIGINT' ? ExitCode.interrupted : ExitCode.terminated;
  }
}

/** Bad command-line usage. */
export class UsageError extends CairnError {
  override readonly code = 'CAIRN_USAGE';
  override readonly exitCode = ExitCode.usage;
}

/** A job file that cannot be read or does not match the merged schema. */
export class JobFileError extends CairnError {
  override readonly code = 'CAIRN_JOB_INVALID';
  override readonly exitCode = ExitCode.usage;
}

/** plugins.json, a plugin manifest or a plugin's activation is broken, or no plugin provides what a job asks for. */
export class PluginError extends CairnError {
  override readonly code = 'CAIRN_PLUGIN';
  override readonly exitCode = ExitCode.usage;
  constructor(readonly pluginId: string | undefined, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The source to back up does not exist or cannot be read as a volume. */
export class SourceError extends CairnError {
  override readonly code: string = 'CAIRN_SOURCE';
}

/**
 * The medium failed to deliver bytes of the source (a read error such as EIO): the range
 * is unreadable, not the source as a whole. A source plugin raises it from `read` naming the
 * range it asked for; `backup --rescue` narrows such a read down and images around the
 * pieces that stay unreadable.
 */
export class SourceReadError extends SourceError {
  override readonly code = 'CAIRN_SOURCE_UNREADABLE';
  constructor(
    readonly path: string,
    readonly offset: number,
    readonly length: number,
    /** Why, as `describeSystemError` gives it: `EIO (input/output error)`. */
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`Cannot read ${path} at offset ${offset} (length ${length}): ${reason}`, options);
  }
}

/** The restore destination is unsuitable (mounted, too small, exists without --force). */
export class RestoreTargetError extends CairnError {
  override readonly code = 'CAIRN_RESTORE_DESTINATION';
}

/**
 * The restore target is too small for the snapshot's data even with a filesystem shrunk
 * (`restore --shrink`, `--size` below the image, a smaller device): refused before the target
 * is written. `minimumSize` is the smallest target, in bytes, that would do.
 */
export class TargetTooSmallError extends CairnError {
  override readonly code = 'CAIRN_TARGET_TOO_SMALL';
  override readonly exitCode = ExitCode.usage;
  constructor(
    message: string,
    readonly minimumSize: number,
  ) {
    super(message);
  }
}

/** Growing or shrinking a restored disk failed (a resize tool failed, a layout that cannot be resized). */
export class ResizeError extends CairnError {
  override readonly code = 'CAIRN_RESIZE';
}

/** No repository where the job's target points. */
export class RepositoryNotFoundError extends CairnError {
  override readonly code = 'CAIRN_REPOSITORY_NOT_FOUND';
  override readonly exitCode = ExitCode.noRepository;
}

/** `init` on a location that already holds a repository. */
export class RepositoryExistsError extends CairnError {
  override readonly code = 'CAIRN_REPOSITORY_EXISTS';
}

/** The repository was written by a newer cairn (format version unknown to this reader). */
export class UnsupportedFormatError extends CairnError {
  override readonly code = 'CAIRN_FORMAT_UNSUPPORTED';
}

export class RepositoryLockedError extends CairnError {
  override readonly code = 'CAIRN_LOCKED';
  override readonly exitCode = ExitCode.locked;
}

/** Another `cairn daemon` keeps its state in the same folder and is still running. */
export class DaemonAlreadyRunningError extends CairnError {
  override readonly code = 'CAIRN_DAEMON_RUNNING';
  override readonly exitCode = ExitCode.locked;
  constructor(stateDir: string, pid: number) {
    super(`A cairn daemon (pid ${pid}) is already running with the state folder ${stateDir}; stop it first, or give this one another --state-dir`);
  }
}

export class WrongPasswordError extends CairnError {
  override readonly code = 'CAIRN_WRONG_PASSWORD';
  override readonly exitCode = ExitCode.wrongPassword;
}

/** The password could not be obtained (variable unset, file missing, command failed). */
export class PasswordSourceError extends CairnError {
  override readonly code = 'CAIRN_PASSWORD_SOURCE';
  override readonly exitCode = ExitCode.usage;
}

/** Stored data failed verification: a pack, index, snapshot or blob is corrupt or missing. */
export class DamageError extends CairnError {
  override readonly code = 'CAIRN_DAMAGE';
  override readonly exitCode = ExitCode.damage;
}

export class SnapshotNotFoundError extends CairnError {
  override readonly code = 'CAIRN_SNAPSHOT_NOT_FOUND';
  override readonly exitCode = ExitCode.usage;
}

/**
 * An overlay file (`cairn serve --overlay`) that cannot be used: made for another snapshot or
 * disk size, not an overlay at all, or damaged. The snapshot is never written instead.
 */
export class OverlayError extends CairnError {
  override readonly code = 'CAIRN_OVERLAY';
  override readonly exitCode = ExitCode.usage;
}

/** A target failed in a way that retrying will not fix (permissions, no space, bad credentials). */
export class TargetError extends CairnError {
  override readonly code = 'CAIRN_TARGET';
}

/** A command of the job file's `hooks` failed, or could not be started. */
export class HookCommandError extends CairnError {
  override readonly code: string = 'CAIRN_HOOK_COMMAND';
}

/** A command of the job file's `hooks` ran past its timeout and was stopped (its whole process group). */
export class HookCommandTimeoutError extends HookCommandError {
  override readonly code = 'CAIRN_HOOK_TIMEOUT';
}

/**
 * A tap of a hook threw. In a `before` hook this aborts the operation; the message names the
 * tap and the hook, and the exit code is the one of the tap's own error when it raised a
 * CairnError on purpose.
 */
export class HookTapError extends CairnError {
  override readonly code = 'CAIRN_HOOK_TAP';
  override readonly exitCode: ExitCode;
  constructor(
    readonly hook: string,
    readonly tap: string,
    cause: unknown,
  ) {
    super(`${tap} (${hook}): ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.exitCode = cause instanceof CairnError ? cause.exitCode : ExitCode.failed;
  }
}

/** A `beforeSnapshot` tap stopped the snapshot from being written. */
export class SnapshotAbortedError extends CairnError {
  override readonly code = 'CAIRN_SNAPSHOT_ABORTED';
  constructor(
    readonly tap: string,
    readonly reason: string,
  ) {
    super(`The snapshot was not saved: ${tap} stopped it: ${reason}`);
  }
}

/** The exit code the CLI returns for an error: its own for a CairnError, else 1 (a bug or an unexpected system error). */
export function exitCodeOfError(err: unknown): ExitCode {
  return err instanceof CairnError ? err.exitCode : ExitCode.failed;
}

/** What the C library calls these errors (strerror), for messages; libuv's wording is terser. */
const SYSTEM_ERRORS: Record<string, string> = {
  EIO: 'input/output error',
  ENODATA: 'no data available',
  EREMOTEIO: 'remote I/O error',
  EBADMSG: 'bad message',
  ENXIO: 'no such device or address',
  ENODEV: 'no such device',
  ENOMEDIUM: 'no medium found',
  ETIMEDOUT: 'connection timed out',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOENT: 'no such file or directory',
};

/** A system error in one line, its code first: `EIO (input/output error)`; other errors by their message. */
export function describeSystemError(err: unknown): string {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) {
    // libuv's message reads `EIO: i/o error, read`: its middle part, where the table has no wording.
    const libuv = typeof message === 'string' ? /^E[A-Z0-9]+: ([^,]+)/.exec(message)?.[1] : undefined;
    const wording = SYSTEM_ERRORS[code] ?? libuv;
    return wording ? `${code} (${wording})` : code;
  }
  return typeof message === 'string' ? message : String(err);
}

/** The daemon's state file cannot be read: unreadable, not JSON, not a state, or written by a newer cairn. */
export class DaemonStateError extends CairnError {
  override readonly code = 'CAIRN_DAEMON_STATE';
}

/** `cairn status` found no state file: no daemon has kept state in that folder. */
export class DaemonStateNotFoundError extends CairnError {
  override readonly code = 'CAIRN_DAEMON_STATE_NOT_FOUND';
}

/** The metrics endpoint could not be served (the address is taken, or cannot be listened on). */
export class MetricsError extends CairnError {
  override readonly code = 'CAIRN_METRICS';
}

/** The systemd service could not be installed (the unit not written, or systemctl failed). */
export class ServiceInstallError extends CairnError {
  override readonly code = 'CAIRN_SERVICE_INSTALL';
}

/** `cairn serve` cannot serve: the socket or address is taken or cannot be listened on, or the TLS files are unusable. */
export class NbdServeError extends CairnError {
  override readonly code = 'CAIRN_NBD_SERVE';
}

/** `cairn mount`/`cairn umount` could not do what was asked: a tool failed, the folder is in use or was not mounted by cairn. */
export class MountError extends CairnError {
  override readonly code = 'CAIRN_MOUNT';
}

/** `cairn export` could not write the image: the destination exists, or qemu-img failed. */
export class ImageExportError extends CairnError {
  override readonly code = 'CAIRN_EXPORT';
}

/** An external program cairn runs (qemu-img, nbdfuse, losetup, mount, a server) is missing, failed, or did not start. */
export class ExternalToolError extends CairnError {
  override readonly code = 'CAIRN_EXTERNAL_TOOL';
}

/** `cairn boot` could not run the machine: QEMU or OVMF missing, `cairn serve` not starting, QEMU failing. */
export class BootError extends CairnError {
  override readonly code = 'CAIRN_BOOT';
}

/** `cairn ls`/`diff`: the file snapshot holds no such path (exit 1, as `ls` of a missing file fails). */
export class SnapshotPathNotFoundError extends CairnError {
  override readonly code = 'CAIRN_PATH_NOT_FOUND';
}
