import type { RunRecord } from '../types';
import { formatRelative, formatTime } from '../format';

/** A run's result as a coloured word: success, warning, failure, skipped, interrupted. */
export function ResultBadge(props: { result?: string }) {
  if (!props.result) return <span class="badge badge-none">never run</span>;
  return <span class={`badge badge-${props.result}`}>{props.result}</span>;
}

/** `success · 4 min ago`, the exact time on hover, the error below when there is one. */
export function RunSummary(props: { run?: RunRecord; showError?: boolean }) {
  const { run } = props;
  if (!run) return <ResultBadge />;
  return (
    <span class="run-summary">
      <ResultBadge result={run.result} /> <span title={formatTime(run.finished)}>{formatRelative(run.finished)}</span>
      {props.showError !== false && run.error && <div class="run-error">{run.error}</div>}
    </span>
  );
}
