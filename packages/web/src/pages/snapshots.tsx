import { useState } from 'preact/hooks';
import { api } from '../api';
import { Dialog } from '../components/dialog';
import { Empty, ErrorNote, Loading } from '../components/notice';
import { TaskProgress } from '../components/progress';
import { formatBytes, formatRelative, formatTime, shortId } from '../format';
import { taskKey, useLive } from '../live';
import { href, Link } from '../router';
import type { SnapshotEntry } from '../types';
import { useFetch } from '../use-fetch';

/** A job's snapshots, newest first: time, kind, size, bytes added, tags; browse, restore or forget each. */
export function SnapshotsPage(props: { job: string }) {
  const { job } = props;
  const stateVersion = useLive((s) => s.stateVersion);
  const snapshots = useFetch(() => api.snapshots(job), [job, stateVersion]);
  const running = useLive((s) => s.progress[taskKey(job, 'backup')]);
  const [forgetting, setForgetting] = useState<SnapshotEntry>();
  const [runError, setRunError] = useState<string>();
  const own = (snapshots.data ?? []).filter((s) => s.job === undefined || s.job === job).sort((a, b) => b.time.localeCompare(a.time));
  const others = (snapshots.data?.length ?? 0) - own.length;
  const runBackup = () => api.run(job, 'backup').then(() => setRunError(undefined), (error: Error) => setRunError(error.message));
  return (
    <>
      <header class="page-head">
        <div>
          <div class="crumbs"><Link href="/">Jobs</Link> /</div>
          <h1>{job}</h1>
        </div>
        <div class="actions">
          <button class="button primary" data-action="run-backup" disabled={!!running} onClick={runBackup}>{running ? 'Backup running…' : 'Back up now'}</button>
          <Link class="button" href={href('jobs', job, 'restore')}>Restore…</Link>
        </div>
      </header>
      <ErrorNote error={runError} />
      {running && <div class="card"><TaskProgress running={running} /></div>}
      <ErrorNote error={snapshots.error} />
      {!snapshots.data && snapshots.loading && <Loading />}
      {snapshots.data && own.length === 0 && <Empty>No snapshots yet: back up now, or wait for the schedule.</Empty>}
      {own.length > 0 && (
        <div class="card flush">
          <table class="table snapshots-table">
            <thead>
              <tr><th>Time</th><th>Snapshot</th><th>Kind</th><th class="num">Size</th><th class="num">Added</th><th>Tags</th><th /></tr>
            </thead>
            <tbody>
              {own.map((snapshot) => (
                <tr key={snapshot.id} data-snapshot={snapshot.id}>
                  <td title={snapshot.time}>{formatTime(snapshot.time)} <span class="muted small">{formatRelative(snapshot.time)}</span></td>
                  <td><Link class="mono" href={href('jobs', job, 'snapshots', snapshot.id)}>{shortId(snapshot.id)}</Link>{snapshot.incomplete && <span class="badge badge-warning">incomplete</span>}{snapshot.damaged && <span class="badge badge-failure">damaged</span>}</td>
                  <td><span class={`kind kind-${snapshot.kind ?? 'volume'}`}>{snapshot.kind ?? 'volume'}</span></td>
                  <td class="num">{formatBytes(snapshot.size)}</td>
                  <td class="num">{formatBytes(snapshot.bytesAdded)}</td>
                  <td>{snapshot.tags?.map((tag) => <span key={tag} class="tag">{tag}</span>)}</td>
                  <td class="row-actions">
                    <Link class="button small" href={href('jobs', job, 'snapshots', snapshot.id)}>{snapshot.kind === 'files' ? 'Browse' : 'Layout'}</Link>
                    <Link class="button small" href={`${href('jobs', job, 'restore')}?snapshot=${snapshot.id}`}>Restore</Link>
                    <button class="button small danger" data-action="forget" onClick={() => setForgetting(snapshot)}>Forget</button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {others > 0 && <p class="muted small">The repository also holds {others} snapshots of other jobs.</p>}
      {forgetting && <ForgetDialog job={job} snapshot={forgetting} onClose={() => setForgetting(undefined)} onForgotten={() => (setForgetting(undefined), snapshots.reload())} />}
    </>
  );
}

/** Forgetting asks for the snapshot's id prefix, typed: a click alone cannot lose a snapshot. */
function ForgetDialog(props: { job: string; snapshot: SnapshotEntry; onClose: () => void; onForgotten: () => void }) {
  const { snapshot } = props;
  const prefix = shortId(snapshot.id);
  const [typed, setTyped] = useState('');
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const confirmed = typed.trim() === prefix || typed.trim() === snapshot.id;
  const forget = async () => {
    setBusy(true);
    try {
      await api.forget(props.job, snapshot.id, typed.trim());
      props.onForgotten();
    } catch (failure) {
      setError((failure as Error).message);
      setBusy(false);
    }
  };
  return (
    <Dialog
      title={`Forget snapshot ${prefix}?`}
      onClose={props.onClose}
      footer={
        <>
          <button class="button" onClick={props.onClose}>Cancel</button>
          <button class="button danger" data-action="confirm-forget" disabled={!confirmed || busy} onClick={forget}>Forget snapshot</button>
        </>
      }
    >
      <p>
        The snapshot of {formatTime(snapshot.time)} ({formatBytes(snapshot.size)}) will no longer be listed or restorable. Its data is removed
        by the next prune.
      </p>
      <label class="field">
        <span>Type <code>{prefix}</code> to confirm</span>
        <input name="confirm" autoFocus autoComplete="off" spellcheck={false} value={typed} onInput={(e) => setTyped(e.currentTarget.value)} />
      </label>
      <ErrorNote error={error} />
    </Dialog>
  );
}
