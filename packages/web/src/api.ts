import type { CheckSummary, FileEntry, JobSummary, LogLine, RestorePreview, RestoreRequest, RestoreState, SnapshotDetail, SnapshotEntry, StatusView, TaskKind } from './types';

/** An error the daemon answered with (`{ error: { code, message } }`), or a network failure (status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }

  get unauthorized(): boolean {
    return this.status === 401;
  }
}

/** Listeners told when the daemon refuses the session, so the whole page can say how to sign in again. */
const unauthorizedListeners = new Set<() => void>();
export function onUnauthorized(listener: () => void): () => void {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

/**
 * One request to the daemon's API. The session cookie goes along by itself (same origin);
 * every state-changing request carries `X-Cairn-Request: 1`, which the daemon demands as its
 * protection against cross-site requests.
 */
async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-Cairn-Request'] = '1';
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (cause) {
    throw new ApiError(0, 'CAIRN_NETWORK', `The daemon did not answer (${String(cause)})`);
  }
  const payload = await response.json().catch(() => undefined);
  if (!response.ok) {
    const error = payload?.error ?? {};
    const failure = new ApiError(response.status, error.code ?? `HTTP_${response.status}`, error.message ?? response.statusText);
    if (failure.unauthorized) unauthorizedListeners.forEach((listener) => listener());
    throw failure;
  }
  return payload as T;
}

const enc = encodeURIComponent;

export const api = {
  status: () => request<StatusView>('GET', '/api/status'),
  jobs: () => request<{ jobs: JobSummary[] }>('GET', '/api/jobs').then((r) => r.jobs),
  snapshots: (job: string) => request<{ snapshots: SnapshotEntry[] }>('GET', `/api/jobs/${enc(job)}/snapshots`).then((r) => r.snapshots),
  snapshot: (job: string, id: string) => request<SnapshotDetail>('GET', `/api/jobs/${enc(job)}/snapshots/${enc(id)}`),
  files: (job: string, id: string, path: string) =>
    request<{ path: string; entries: FileEntry[] }>('GET', `/api/jobs/${enc(job)}/snapshots/${enc(id)}/files?path=${enc(path)}`),
  run: (job: string, task: TaskKind, readData?: boolean) =>
    request<{ accepted: boolean }>('POST', `/api/jobs/${enc(job)}/run`, { task, ...(readData && { readData: true }) }),
  forget: (job: string, id: string, confirm: string) => request<{ forgotten: string }>('DELETE', `/api/jobs/${enc(job)}/snapshots/${enc(id)}`, { confirm }),
  previewRestore: (job: string, body: Pick<RestoreRequest, 'snapshot' | 'to' | 'include'>) =>
    request<RestorePreview>('POST', `/api/jobs/${enc(job)}/restore/preview`, body),
  restore: (job: string, body: RestoreRequest) => request<{ restoreId: string }>('POST', `/api/jobs/${enc(job)}/restore`, body),
  restoreState: (restoreId: string) => request<RestoreState>('GET', `/api/restores/${enc(restoreId)}`),
  checks: () => request<{ checks: CheckSummary[] }>('GET', '/api/checks').then((r) => r.checks),
  log: (lines = 200) => request<{ lines: LogLine[] }>('GET', `/api/log?lines=${lines}`).then((r) => r.lines),
};
