import { api } from '../api';
import { DiskLayout } from '../components/disk-layout';
import { FileBrowser } from '../components/file-browser';
import { ErrorNote, Loading } from '../components/notice';
import { formatBytes, formatSpan, formatTime, shortId } from '../format';
import { href, Link, navigate, useLocation } from '../router';
import type { SnapshotDetail } from '../types';
import { useFetch } from '../use-fetch';

/** One snapshot: its facts, then the disk layout (volume) and its files (a volume's through the daemon's read-only mount). */
export function SnapshotPage(props: { job: string; id: string }) {
  const { job, id } = props;
  const location = useLocation();
  const snapshot = useFetch(() => api.snapshot(job, id), [job, id]);
  const detail = snapshot.data;
  const path = location.query.get('path') ?? (detail ? startPath(detail) : '/');
  const open = (to: string) => navigate(`${href('jobs', job, 'snapshots', id)}?path=${encodeURIComponent(to)}`);
  return (
    <>
      <header class="page-head">
        <div>
          <div class="crumbs"><Link href="/">Jobs</Link> / <Link href={href('jobs', job)}>{job}</Link> /</div>
          <h1>Snapshot <span class="mono">{shortId(id)}</span></h1>
        </div>
        <div class="actions">
          <Link class="button primary" href={`${href('jobs', job, 'restore')}?snapshot=${encodeURIComponent(id)}`}>Restore…</Link>
        </div>
      </header>
      <ErrorNote error={snapshot.error} />
      {!detail && snapshot.loading && <Loading />}
      {detail && <Facts snapshot={detail} />}
      {detail?.layout && (
        <section class="card">
          <h2>Disk layout</h2>
          <DiskLayout snapshot={detail} />
        </section>
      )}
      {detail && detail.kind === 'files' && (
        <section class="card">
          <h2>Files</h2>
          <FileBrowser job={job} snapshot={id} path={path} onOpen={open} />
        </section>
      )}
      {detail && detail.kind !== 'files' && (
        <section class="card">
          <h2>Files</h2>
          {location.query.get('path') === null ? (
            <p>
              The daemon mounts the snapshot's filesystems read-only to list them (p1, p2, … by partition number).{' '}
              <button class="button small" data-action="browse-image" onClick={() => open('/')}>Browse files</button>
            </p>
          ) : (
            <FileBrowser job={job} snapshot={id} path={path} onOpen={open} />
          )}
        </section>
      )}
    </>
  );
}

/** Where browsing starts: the folder the snapshot's paths have in common. */
function startPath(snapshot: SnapshotDetail): string {
  const paths = snapshot.paths ?? [];
  if (paths.length === 0) return '/';
  const split = paths.map((p) => p.split('/').filter(Boolean));
  const common: string[] = [];
  for (let i = 0; split.every((parts) => parts.length > i && parts[i] === split[0]![i]); i++) common.push(split[0]![i]!);
  return '/' + common.join('/');
}

function Facts(props: { snapshot: SnapshotDetail }) {
  const s = props.snapshot;
  return (
    <section class="card">
      <dl class="facts">
        <div><dt>Time</dt><dd>{formatTime(s.time)}</dd></div>
        <div><dt>Kind</dt><dd>{s.kind ?? 'volume'}</dd></div>
        <div><dt>Size</dt><dd>{formatBytes(s.size ?? (s.stats?.totalBytes as number | undefined))}</dd></div>
        <div><dt>Added</dt><dd>{formatBytes(s.bytesAdded)}</dd></div>
        <div><dt>Took</dt><dd>{formatSpan(s.stats?.durationMs)}</dd></div>
        <div><dt>Host</dt><dd>{s.hostname ?? '–'}</dd></div>
        <div class="wide"><dt>Source</dt><dd class="mono small">{s.paths?.join(', ') ?? s.source?.path ?? '–'}</dd></div>
        <div class="wide"><dt>Id</dt><dd class="mono small">{s.id}</dd></div>
        {s.tags && s.tags.length > 0 && <div><dt>Tags</dt><dd>{s.tags.map((tag) => <span key={tag} class="tag">{tag}</span>)}</dd></div>}
      </dl>
    </section>
  );
}
