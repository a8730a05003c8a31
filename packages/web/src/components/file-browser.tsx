import { api } from '../api';
import { formatBytes, formatTime } from '../format';
import type { FileEntry } from '../types';
import { useFetch } from '../use-fetch';
import { Empty, ErrorNote, Loading } from './notice';

/** `/a/b/c` → [['/', '/'], ['a', '/a'], ['b', '/a/b'], ['c', '/a/b/c']]. */
function crumbs(path: string): Array<[string, string]> {
  const parts = path.split('/').filter(Boolean);
  return [['/', '/'], ...parts.map((name, i): [string, string] => [name, '/' + parts.slice(0, i + 1).join('/')])];
}

export function parentOf(path: string): string {
  const cut = path.replace(/\/+$/, '').lastIndexOf('/');
  return cut <= 0 ? '/' : path.slice(0, cut);
}

/**
 * One folder of a file snapshot: breadcrumbs, then its entries; a folder opens by its name.
 * With `selected`, each row has a checkbox (the restore wizard picks what to restore).
 */
export function FileBrowser(props: {
  job: string;
  snapshot: string;
  path: string;
  onOpen: (path: string) => void;
  selected?: Set<string>;
  onToggle?: (path: string) => void;
}) {
  const listing = useFetch(() => api.files(props.job, props.snapshot, props.path), [props.job, props.snapshot, props.path]);
  const entries = [...(listing.data?.entries ?? [])].sort((a, b) => Number(b.type === 'dir') - Number(a.type === 'dir') || a.name.localeCompare(b.name));
  const selecting = props.selected !== undefined;
  return (
    <div class="browser">
      <div class="browser-path" aria-label="folder">
        {crumbs(props.path).map(([name, path], i) => (
          <span key={path}>
            {i > 1 && <span class="sep">/</span>}
            <button class="crumb" data-path={path} onClick={() => props.onOpen(path)}>{name}</button>
          </span>
        ))}
      </div>
      <ErrorNote error={listing.error} />
      {!listing.data && listing.loading && <Loading />}
      {listing.data && entries.length === 0 && <Empty>This folder is empty.</Empty>}
      {entries.length > 0 && (
        <table class="table files-table">
          <thead>
            <tr>{selecting && <th class="check" />}<th>Name</th><th class="num">Size</th><th>Permissions</th><th>Owner</th><th>Modified</th></tr>
          </thead>
          <tbody>
            {props.path !== '/' && (
              <tr>
                {selecting && <td />}
                <td colSpan={5}><button class="link" onClick={() => props.onOpen(parentOf(props.path))}>.. (up)</button></td>
              </tr>
            )}
            {entries.map((entry) => (
              <FileRow key={entry.path} entry={entry} selecting={selecting} checked={props.selected?.has(entry.path) ?? false} onToggle={props.onToggle} onOpen={props.onOpen} />
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function FileRow(props: { entry: FileEntry; selecting: boolean; checked: boolean; onToggle?: (path: string) => void; onOpen: (path: string) => void }) {
  const { entry } = props;
  return (
    <tr data-entry={entry.name} class={props.checked ? 'selected' : ''}>
      {props.selecting && (
        <td class="check">
          <input type="checkbox" aria-label={`select ${entry.name}`} checked={props.checked} onChange={() => props.onToggle?.(entry.path)} />
        </td>
      )}
      <td class="name">
        <span class="name-cell">
          <span class={`icon icon-${entry.type}`} aria-hidden="true" />
          {entry.type === 'dir' ? (
            <button class="link" onClick={() => props.onOpen(entry.path)}>{entry.name}</button>
          ) : (
            <span>{entry.name}{entry.target !== undefined && <span class="muted"> → {entry.target}</span>}</span>
          )}
        </span>
      </td>
      <td class="num">{entry.type === 'dir' ? '' : formatBytes(entry.size)}</td>
      <td class="mono small">{entry.permissions ?? ''}</td>
      <td class="small">{entry.user ?? ''}{entry.group ? `:${entry.group}` : ''}</td>
      <td class="small">{formatTime(entry.mtime)}</td>
    </tr>
  );
}
