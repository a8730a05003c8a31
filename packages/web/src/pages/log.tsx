import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api';
import { ErrorNote } from '../components/notice';
import { formatTime } from '../format';
import { seedLog, useLive } from '../live';
import type { LogLine } from '../types';

const LEVELS = ['debug', 'info', 'warn', 'error'];

/** The daemon's log: the last 200 lines, then each new line as it comes; follows the end unless scrolled up. */
export function LogPage() {
  const lines = useLive((s) => s.log);
  const [error, setError] = useState<string>();
  const [level, setLevel] = useState('info');
  const [job, setJob] = useState('');
  const scroller = useRef<HTMLDivElement>(null);
  const following = useRef(true);
  useEffect(() => {
    api.log(200).then(seedLog, (failure: Error) => setError(failure.message));
  }, []);
  useEffect(() => {
    const element = scroller.current;
    if (element && following.current) element.scrollTop = element.scrollHeight;
  }, [lines, level, job]);
  const jobs = [...new Set(lines.map((line) => line.job).filter((name): name is string => !!name))].sort();
  const minimum = LEVELS.indexOf(level);
  const shown = lines.filter((line) => levelRank(line.level) >= minimum && (!job || line.job === job));
  const onScroll = () => {
    const element = scroller.current!;
    following.current = element.scrollHeight - element.scrollTop - element.clientHeight < 24;
  };
  return (
    <>
      <header class="page-head">
        <h1>Log</h1>
        <div class="filters">
          <label>Level <select name="level" value={level} onChange={(e) => setLevel(e.currentTarget.value)}>{LEVELS.map((l) => <option key={l} value={l}>{l}</option>)}</select></label>
          <label>Job <select name="job" value={job} onChange={(e) => setJob(e.currentTarget.value)}><option value="">all</option>{jobs.map((j) => <option key={j} value={j}>{j}</option>)}</select></label>
        </div>
      </header>
      <ErrorNote error={error} />
      <div class="card flush log" ref={scroller} onScroll={onScroll} aria-live="polite">
        {shown.length === 0 && <div class="muted log-empty">Nothing logged yet.</div>}
        {shown.map((line, i) => <LogRow key={`${line.time}-${i}`} line={line} />)}
      </div>
    </>
  );
}

function levelRank(level: string): number {
  const rank = LEVELS.indexOf(level === 'warning' ? 'warn' : level === 'fatal' ? 'error' : level);
  return rank === -1 ? 1 : rank;
}

function LogRow(props: { line: LogLine }) {
  const { line } = props;
  return (
    <div class={`log-line log-${line.level}`}>
      <span class="log-time">{formatTime(line.time)}</span>
      <span class="log-level">{line.level}</span>
      <span class="log-where">{line.job ?? ''}{line.task ? ` ${line.task}` : ''}</span>
      <span class="log-message">{line.message}</span>
    </div>
  );
}
