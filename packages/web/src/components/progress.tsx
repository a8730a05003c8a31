import type { RunningTask } from '../types';
import { formatBytes, formatRate, formatRelative, formatSpan } from '../format';

/** A running task as the daemon reports it each second: a bar (or a moving stripe without a total), throughput, ETA. */
export function TaskProgress(props: { running: RunningTask }) {
  const { running } = props;
  const progress = running.progress;
  const total = progress?.bytesTotal;
  const fraction = progress && total ? Math.min(1, progress.bytesDone / total) : undefined;
  return (
    <div class="task-progress" data-task={running.task}>
      <div class="task-progress-head">
        <span class="spinner" aria-hidden="true" />
        <strong>{running.task === 'backup' ? 'Backing up' : running.task === 'check' ? 'Checking' : running.task === 'prune' ? 'Pruning' : 'Restoring'}</strong>
        {progress?.phase && progress.phase !== running.task && <span class="muted"> · {progress.phase}</span>}
        <span class="muted"> · started {formatRelative(running.since)}</span>
        {fraction !== undefined && <span class="task-progress-percent">{Math.floor(fraction * 100)}%</span>}
      </div>
      <div class={`bar ${fraction === undefined ? 'bar-indeterminate' : ''}`} role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={fraction === undefined ? undefined : Math.floor(fraction * 100)}>
        <div class="bar-fill" style={{ width: `${((fraction ?? 1) * 100).toFixed(1)}%` }} />
      </div>
      {progress && (
        <div class="task-progress-figures">
          <span>{formatBytes(progress.bytesDone)}{total !== undefined && ` of ${formatBytes(total)}`}</span>
          <span class="throughput">{formatRate(progress.bytesPerSecond)}</span>
          <span class="eta">{progress.etaSeconds !== undefined ? `${formatSpan(progress.etaSeconds * 1000)} left` : ''}</span>
        </div>
      )}
    </div>
  );
}
