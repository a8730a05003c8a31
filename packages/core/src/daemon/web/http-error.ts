/** An API error: the HTTP status and `{ error: { code, message } }`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The HTTP status for a `cairn` command's error code (what the command's `--json` error said). */
export function statusForCairnError(code: string | undefined, message: string): { status: number; code: string } {
  if (code === 'CAIRN_USAGE' && /is a volume image snapshot/.test(message)) return { status: 409, code: 'CAIRN_NOT_FILES' };
  switch (code) {
    case 'CAIRN_SNAPSHOT_NOT_FOUND':
    case 'CAIRN_PATH_NOT_FOUND':
    case 'CAIRN_REPOSITORY_NOT_FOUND':
      return { status: 404, code };
    case 'CAIRN_LOCKED':
      return { status: 409, code };
    case 'CAIRN_USAGE':
    case 'CAIRN_JOB_INVALID':
      return { status: 400, code };
    default:
      return { status: 500, code: code ?? 'CAIRN_FAILED' };
  }
}
