import { useState } from 'preact/hooks';
import { api } from '../api';
import { RunSummary } from '../components/badges';
import { ErrorNote, Empty, Loading } from '../components/notice';
import { TaskProgress } from '../components/progress';
import { Sparkline } from '../components/sparkline';
import { formatBytes, formatRelative, formatSpan, formatTime } from '../format';
import { taskKey, useLive } from '../live';
import { href, Link } from '../router';
import type { JobSummary, RunningTask, SnapshotEntry, TaskKind } from '../types';
import { useFetch } from '../use-fetch';

/** The first page: every job as a card with its schedule, last and next run, size, trends and buttons. */
export function JobsPage() {
  const stateVersion = useLive((s) => s.stateVersion);
  const jobs = useFetch(() => api.jobs(), [stateVersion]);
  const problems = useLive((s) => s.status?.problems ?? []);
  return (
    <>
      <header class="page-head">
        <h1>Jobs</h1>
        {jobs.data && <JobCounts jobs={jobs.data} />}
      </header>
      <ErrorNote error={jobs.error} />
      {problems.map((problem) => (
        <ErrorNote key={problem.file} error={`${problem.file} did not load (its previous version keeps running): ${problem.message}`} />
      ))}
      {!jobs.data && jobs.loading && <Loading />}
      {jobs.data?.length === 0 && <Empty>The daemon runs no jobs. Start it with job files: <code>cairn daemon --web job.json…</code></Empty>}
      <div class="job-list">{jobs.data?.map((job) => <JobCard key={job.name} job={job} />)}</div>
    </>
  );
}

function JobCounts(props: { jobs: JobSummary[] }) {
  const failing = props.jobs.filter((job) => job.tasks.backup?.lastRun?.result === 'failure').length;
  const running = props.jobs.filter((job) => job.running || Object.values(job.tasks).some((task) => task?.running)).length;
  return (
    <div class="counts">
      <span>{props.jobs.length} {props.jobs.length === 1 ? 'job' : 'jobs'}</span>
      <span class={running ? 'count-running' : ''}>{running} running</span>
      <span class={failing ? 'count-failing' : ''}>{failing} failing</span>
    </div>
  );
}

/** Progress of the job's running task: the live events' figures, else what /api/jobs said when loaded. */
function useRunning(job: JobSummary): RunningTask | undefined {
  const progress = useLive((s) => s.progress);
  for (const task of ['backup', 'check', 'prune', 'restore'] as const) {
    const live = progress[taskKey(job.name, task)];
    if (live) return live;
  }
  if (job.running) return job.running;
  for (const task of ['backup', 'check', 'prune'] as const) {
    const running = job.tasks[task]?.running;
    if (running) return { job: job.name, task, since: running.since };
  }
  return undefined;
}

function JobCard(props: { job: JobSummary }) {
  const { job } = props;
  const backup = job.tasks.backup;
  const running = useRunning(job);
  const runs = job.history.filter((run) => run.task === 'backup' && (run.result === 'success' || run.result === 'warning'));
  return (
    <article class="card job-card" data-job={job.name}>
      <div class="job-card-head">
        <div>
          <h2><Link href={href('jobs', job.name)}>{job.name}</Link></h2>
          <div class="muted small job-route">
            <span class={`kind kind-${job.kind}`}>{job.kind}</span> {sourceText(job)} → {job.target.type} {job.target.location}
          </div>
        </div>
        <RunButtons job={job} running={running} />
      </div>
      <dl class="facts">
        <div><dt>Schedule</dt><dd>{job.schedule ?? backup?.schedule ?? 'none'}</dd></div>
        <div><dt>Next run</dt><dd title={formatTime(backup?.nextRun)}>{backup?.nextRun ? formatRelative(backup.nextRun) : '–'}</dd></div>
        <div class="fact-last-run"><dt>Last run</dt><dd><RunSummary run={backup?.lastRun} showError={false} /></dd></div>
        <div class="fact-size"><dt>Size</dt><dd><LatestSize job={job.name} snapshot={backup?.lastSuccess?.snapshot} /></dd></div>
        <div><dt>Duration</dt><dd><Sparkline values={runs.map((run) => run.durationMs)} label="duration" format={formatSpan} /></dd></div>
        <div><dt>Added</dt><dd><Sparkline values={runs.map((run) => run.bytesAdded ?? 0)} label="bytes added" format={formatBytes} /></dd></div>
      </dl>
      {backup?.lastRun?.error && <div class="run-error">{backup.lastRun.error}</div>}
      {running && <TaskProgress running={running} />}
    </article>
  );
}

/** The size of the job's newest snapshot, fetched again only when a backup saves a new one. */
function LatestSize(props: { job: string; snapshot?: string }) {
  const snapshots = useFetch(() => api.snapshots(props.job), [props.job, props.snapshot]);
  const own = snapshots.data?.filter((s) => s.job === undefined || s.job === props.job) ?? [];
  const newest = own.reduce<SnapshotEntry | undefined>((a, b) => (!a || b.time > a.time ? b : a), undefined);
  if (!newest) return <span class="muted">{snapshots.loading ? '…' : 'no snapshot'}</span>;
  return <span title={`snapshot ${newest.id.slice(0, 8)}`}>{formatBytes(newest.size)}</span>;
}

function sourceText(job: JobSummary): string {
  if (job.source.path) return job.source.path;
  return job.source.paths?.join(', ') ?? job.source.type;
}

/** Run now (backup), check now, and the way to the snapshots; a button is disabled while its task runs. */
function RunButtons(props: { job: JobSummary; running?: RunningTask }) {
  const { job } = props;
  const [asked, setAsked] = useState<Partial<Record<TaskKind, boolean>>>({});
  const [error, setError] = useState<string>();
  const run = async (task: TaskKind) => {
    setError(undefined);
    setAsked((a) => ({ ...a, [task]: true }));
    try {
      await api.run(job.name, task);
    } catch (failure) {
      setError((failure as Error).message);
    } finally {
      // The state event that follows shows the task as running; keep the button calm until then.
      setTimeout(() => setAsked((a) => ({ ...a, [task]: false })), 1500);
    }
  };
  const busy = (task: TaskKind) => asked[task] || props.running?.task === task || !!job.tasks[task]?.running;
  return (
    <div class="actions">
      <button class="button primary" data-action="run-backup" disabled={busy('backup')} onClick={() => run('backup')}>
        {busy('backup') ? 'Backup running…' : 'Back up now'}
      </button>
      <button class="button" data-action="run-check" disabled={busy('check')} onClick={() => run('check')}>
        {busy('check') ? 'Checking…' : 'Check'}
      </button>
      <Link class="button" href={href('jobs', job.name)}>Snapshots</Link>
      <Link class="button" href={`${href('jobs', job.name, 'restore')}`}>Restore…</Link>
      {error && <div class="action-error" role="alert">{error}</div>}
    </div>
  );
}
