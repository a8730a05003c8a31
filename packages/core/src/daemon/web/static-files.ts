import { readFile, stat } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

/**
 * Serves the file at `urlPath` from the web app's `root`; a path that names no file gets
 * `index.html` (the app's own routes, drawn in the browser). Nothing outside `root` is served.
 */
export async function serveStatic(root: string, urlPath: string, res: ServerResponse, head: boolean): Promise<void> {
  let relative: string;
  try {
    relative = normalize(decodeURIComponent(urlPath)).replace(/^([/\\])+/, '');
  } catch {
    relative = '';
  }
  const file = relative === '' || relative.split(sep).includes('..') ? undefined : join(root, relative);
  const found = file && (await stat(file).catch(() => undefined))?.isFile() ? file : join(root, 'index.html');
  const body = await readFile(found).catch(() => undefined);
  if (!body) return sendHtml(res, 404, page('No dashboard here', `<p>The dashboard's files are missing from ${escapeHtml(root)}: build it (<code>pnpm build</code>).</p>`), head);
  // Bundled assets carry a content hash in their names; index.html must be fetched afresh.
  res.setHeader('Cache-Control', found.endsWith('index.html') ? 'no-cache' : 'public, max-age=31536000, immutable');
  res.writeHead(200, { 'Content-Type': CONTENT_TYPES[extname(found)] ?? 'application/octet-stream', 'Content-Length': body.length });
  res.end(head ? undefined : body);
}

export function sendHtml(res: ServerResponse, status: number, html: string, head = false): void {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8' });
  res.end(head ? undefined : html);
}

/** A small page of the server's own (no web app, not logged in). */
export function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>\n`;
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
