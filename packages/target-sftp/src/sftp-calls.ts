/* Small helpers shared by the target and its object writer. */
import { ConnectionLostError } from './connection.js';

/** SSH_FX_NO_SUCH_FILE (draft-ietf-secsh-filexfer-02). */
export const SFTP_NO_SUCH_FILE = 2;

/** Calls an ssh2 SFTP method that takes a callback, as a promise. */
export function call<T = void>(start: (cb: (err: Error | undefined | null, result: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    try {
      start((err, result) => (err ? reject(err) : resolve(result)));
    } catch (err) {
      // ssh2 throws synchronously when the channel is already closed.
      reject(new ConnectionLostError(`connection lost: ${messageOf(err)}`, { cause: err }));
    }
  });
}

/** The SFTP status code of a failed request (SSH_FX_*), undefined for other errors. */
export function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'number' ? code : undefined;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
