import { useEffect, useState } from 'preact/hooks';
import type { LogLine, RestoreState, RunningTask, StatusView } from './types';

/*
 * What the daemon pushes over `/api/events` (server-sent events), kept in one place that
 * every page reads: the status object, the progress of each running task, the recent log
 * lines and the restores' ends. `stateVersion` counts state changes, so a page can fetch
 * its own data again when, for example, a backup has saved a snapshot.
 */

export interface LiveState {
  connected: boolean;
  status?: StatusView;
  stateVersion: number;
  /** Keyed by `job/task`. */
  progress: Record<string, RunningTask>;
  log: LogLine[];
  restores: Record<string, RestoreState>;
}

const LOG_KEPT = 1000;

let live: LiveState = { connected: false, stateVersion: 0, progress: {}, log: [], restores: {} };
const listeners = new Set<() => void>();

function update(change: Partial<LiveState>): void {
  live = { ...live, ...change };
  listeners.forEach((listener) => listener());
}

export function taskKey(job: string, task: string): string {
  return `${job}/${task}`;
}

/** Progress only for tasks the state still shows as running: a finished task's last figures go away. */
function keepRunning(progress: Record<string, RunningTask>, status: StatusView): Record<string, RunningTask> {
  const kept: Record<string, RunningTask> = {};
  for (const [key, running] of Object.entries(progress)) {
    const job = status.jobs.find((j) => j.name === running.job);
    if (running.task === 'restore' || job?.tasks[running.task]?.running) kept[key] = running;
  }
  return kept;
}

let source: EventSource | undefined;

/**
 * Opens the event stream once; EventSource reconnects by itself when the daemon restarts.
 * A page left for another keeps its stream open while the browser caches it for "back": the
 * stream is closed then, since a browser opens at most six connections to one HTTP/1.1 server
 * and six cached pages would leave none for the next page's requests.
 */
export function connectLive(): void {
  if (source) return;
  addEventListener('pagehide', disconnectLive);
  addEventListener('pageshow', (event) => {
    if (event.persisted) connectLive();
  });
  source = new EventSource('/api/events');
  source.onopen = () => update({ connected: true });
  source.onerror = () => update({ connected: false });
  source.addEventListener('state', (event) => {
    const status = JSON.parse((event as MessageEvent).data) as StatusView;
    update({ status, stateVersion: live.stateVersion + 1, progress: keepRunning(live.progress, status) });
  });
  source.addEventListener('progress', (event) => {
    const running = JSON.parse((event as MessageEvent).data) as RunningTask;
    update({ progress: { ...live.progress, [taskKey(running.job, running.task)]: running } });
  });
  source.addEventListener('log', (event) => {
    const line = JSON.parse((event as MessageEvent).data) as LogLine;
    update({ log: [...live.log, line].slice(-LOG_KEPT) });
  });
  source.addEventListener('restore', (event) => {
    const restore = JSON.parse((event as MessageEvent).data) as RestoreState & { restoreId: string };
    update({ restores: { ...live.restores, [restore.restoreId]: restore } });
  });
}

function disconnectLive(): void {
  source?.close();
  source = undefined;
}

/** The log lines fetched when the Log page opens, merged before those that came live. */
export function seedLog(lines: LogLine[]): void {
  const seen = new Set(live.log.map((line) => `${line.time}|${line.message}`));
  update({ log: [...lines.filter((line) => !seen.has(`${line.time}|${line.message}`)), ...live.log].slice(-LOG_KEPT) });
}

/** The part of the live state a component reads; it renders again when that part changes. */
export function useLive<T>(select: (state: LiveState) => T): T {
  const [value, setValue] = useState(() => select(live));
  useEffect(() => {
    const listener = () => setValue(() => select(live));
    listeners.add(listener);
    listener();
    return () => void listeners.delete(listener);
  }, []);
  return value;
}
