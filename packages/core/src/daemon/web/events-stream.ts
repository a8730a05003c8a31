import type { IncomingMessage, ServerResponse } from 'node:http';
import type { DashboardEventMap, DashboardEvents } from './dashboard.js';

/** A comment line this often keeps proxies and browsers from closing an idle stream. */
const KEEPALIVE_MS = 15_000;

const STREAMED: ReadonlyArray<keyof DashboardEventMap> = ['state', 'progress', 'log', 'restore'];

/**
 * `GET /api/events`: Server-Sent Events. `state` (the /api/status object) on every change of
 * the daemon's state, `progress` of running tasks, `log` lines, `restore` ends and starts.
 * `stateView` turns the daemon's state into what /api/status answers.
 */
export function streamEvents(req: IncomingMessage, res: ServerResponse, events: DashboardEvents, stateView: (state: DashboardEventMap['state']) => unknown, initial: unknown): () => void {
  res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
  const send = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  send('state', initial);
  const stops = STREAMED.map((event) => events.on(event, (value) => send(event, event === 'state' ? stateView(value as DashboardEventMap['state']) : value)));
  const keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS);
  const close = () => {
    clearInterval(keepalive);
    for (const stop of stops) stop();
    res.end();
  };
  req.once('close', close);
  return close;
}
