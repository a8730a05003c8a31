import { useState } from 'preact/hooks';
import { api } from '../api';
import { ResultBadge, RunSummary } from '../components/badges';
import { Empty, ErrorNote, Loading } from '../components/notice';
import { TaskProgress } from '../components/progress';
import { formatSpan, formatTime } from '../format';
import { taskKey, useLive } from '../live';
import { href, Link } from '../router';
import type { JobSummary } from '../types';
import { useFetch } from '../use-fetch';

/** The repository checks: each job's last check and last clean one; start a check (structure, or every byte). */
export function ChecksPage() {
  const stateVersion = useLive((s) => s.stateVersion);
  const checks = useFetch(() => api.checks(), [stateVersion]);
  const jobs = useFetch(() => api.jobs(), [stateVersion]);
  const byJob = new Map((checks.data ?? []).map((check) => [check.job, check]));
  return (
    <>
      <header class="page-head"><h1>Checks</h1></header>
      <p class="muted">A check reads the repository's structure (indexes, snapshots, packs listed); with “read all data” it also decrypts and verifies every byte.</p>
      <ErrorNote error={checks.error ?? jobs.error} />
      {!jobs.data && jobs.loading && <Loading />}
      {jobs.data?.length === 0 && <Empty>No jobs.</Empty>}
      {jobs.data && jobs.data.length > 0 && (
        <div class="card flush">
          <table class="table checks-table">
            <thead>
              <tr><th>Job</th><th>Schedule</th><th>Last check</th><th class="num">Took</th><th>Last clean check</th><th /></tr>
            </thead>
            <tbody>
              {jobs.data.map((job) => {
                const check = byJob.get(job.name);
                return (
                  <tr key={job.name} data-job={job.name}>
                    <td><Link href={href('jobs', job.name)}>{job.name}</Link></td>
                    <td class="small">{job.tasks.check?.schedule ?? <span class="muted">on demand</span>}</td>
                    <td><RunSummary run={check?.lastRun} /></td>
                    <td class="num">{formatSpan(check?.lastRun.durationMs)}</td>
                    <td>{check?.lastSuccess ? <span title={check.lastSuccess.finished}><ResultBadge result="success" /> {formatTime(check.lastSuccess.finished)}</span> : <span class="muted">never</span>}</td>
                    <td class="row-actions"><CheckButtons job={job} /></td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}

function CheckButtons(props: { job: JobSummary }) {
  const { job } = props;
  const live = useLive((s) => s.progress[taskKey(job.name, 'check')]);
  const [error, setError] = useState<string>();
  const [asked, setAsked] = useState(false);
  const running = asked || !!live || !!job.tasks.check?.running || job.running?.task === 'check';
  const start = (readData: boolean) => {
    setAsked(true);
    setError(undefined);
    api.run(job.name, 'check', readData).then(
      () => setTimeout(() => setAsked(false), 1500),
      (failure: Error) => (setError(failure.message), setAsked(false)),
    );
  };
  if (live) return <TaskProgress running={live} />;
  return (
    <div class="actions">
      <button class="button small" data-action="run-check" disabled={running} onClick={() => start(false)}>{running ? 'Checking…' : 'Check now'}</button>
      <button class="button small" data-action="run-check-read-data" disabled={running} onClick={() => start(true)}>Read all data</button>
      {error && <div class="action-error" role="alert">{error}</div>}
    </div>
  );
}
