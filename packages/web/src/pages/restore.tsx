import { useEffect, useState } from 'preact/hooks';
import { api } from '../api';
import { FileBrowser } from '../components/file-browser';
import { Empty, ErrorNote, Loading } from '../components/notice';
import { TaskProgress } from '../components/progress';
import { formatBytes, formatTime, shortId } from '../format';
import { taskKey, useLive } from '../live';
import { href, Link, useLocation } from '../router';
import type { RestorePreview, RestoreRequest, RestoreState, SnapshotEntry } from '../types';
import { useFetch } from '../use-fetch';
import { literalPattern } from '../restore-pattern';

/*
 * The restore wizard: snapshot → (files: what) → where → preview (what will be overwritten;
 * a device's name typed) → run, with progress → result. Each step can go back until the
 * restore starts.
 */

type Step = 'snapshot' | 'what' | 'target' | 'preview' | 'run';
type Overwrite = NonNullable<RestoreRequest['overwrite']>;

const STEP_TITLES: Record<Step, string> = { snapshot: 'Snapshot', what: 'What', target: 'Where', preview: 'Check', run: 'Restore' };

export function RestorePage(props: { job: string }) {
  const { job } = props;
  const location = useLocation();
  const snapshots = useFetch(() => api.snapshots(job), [job]);
  const own = (snapshots.data ?? []).filter((s) => s.job === undefined || s.job === job).sort((a, b) => b.time.localeCompare(a.time));
  const [step, setStep] = useState<Step>('snapshot');
  const [snapshotId, setSnapshotId] = useState(location.query.get('snapshot') ?? undefined);
  const [include, setInclude] = useState<Set<string>>(new Set());
  const [to, setTo] = useState('');
  const [overwrite, setOverwrite] = useState<Overwrite>('if-changed');
  const [preview, setPreview] = useState<RestorePreview>();
  const [restoreId, setRestoreId] = useState<string>();
  const snapshot = own.find((s) => s.id === snapshotId || (snapshotId !== undefined && s.id.startsWith(snapshotId)));
  const isFiles = snapshot?.kind === 'files';
  const steps: Step[] = isFiles ? ['snapshot', 'what', 'target', 'preview', 'run'] : ['snapshot', 'target', 'preview', 'run'];
  const next = () => setStep(steps[steps.indexOf(step) + 1]!);
  const back = () => setStep(steps[steps.indexOf(step) - 1]!);
  return (
    <>
      <header class="page-head">
        <div>
          <div class="crumbs"><Link href="/">Jobs</Link> / <Link href={href('jobs', job)}>{job}</Link> /</div>
          <h1>Restore</h1>
        </div>
      </header>
      <ol class="steps">
        {steps.map((s, i) => (
          <li key={s} class={s === step ? 'current' : steps.indexOf(step) > i ? 'done' : ''}>{i + 1}. {STEP_TITLES[s]}</li>
        ))}
      </ol>
      <section class="card wizard" data-step={step}>
        <ErrorNote error={snapshots.error} />
        {step === 'snapshot' && (
          snapshots.data ? <PickSnapshot snapshots={own} selected={snapshot?.id} onSelect={setSnapshotId} onNext={next} /> : <Loading />
        )}
        {step === 'what' && snapshot && <PickFiles job={job} snapshot={snapshot} include={include} setInclude={setInclude} onBack={back} onNext={next} />}
        {step === 'target' && snapshot && (
          <PickTarget snapshot={snapshot} to={to} setTo={setTo} overwrite={overwrite} setOverwrite={setOverwrite} onBack={back} onNext={next} />
        )}
        {step === 'preview' && snapshot && (
          <Preview
            job={job}
            request={{ snapshot: snapshot.id, to, ...(include.size > 0 && { include: [...include] }) }}
            preview={preview}
            setPreview={setPreview}
            overwrite={isFiles ? overwrite : undefined}
            onBack={back}
            onStarted={(id) => (setRestoreId(id), next())}
          />
        )}
        {step === 'run' && restoreId && <Running job={job} restoreId={restoreId} to={to} />}
      </section>
    </>
  );
}

function Nav(props: { onBack?: () => void; onNext?: () => void; nextLabel?: string; nextDisabled?: boolean; nextAction?: string }) {
  return (
    <div class="wizard-nav">
      {props.onBack && <button class="button" onClick={props.onBack}>Back</button>}
      {props.onNext && (
        <button class="button primary" data-action={props.nextAction ?? 'next'} disabled={props.nextDisabled} onClick={props.onNext}>
          {props.nextLabel ?? 'Next'}
        </button>
      )}
    </div>
  );
}

function PickSnapshot(props: { snapshots: SnapshotEntry[]; selected?: string; onSelect: (id: string) => void; onNext: () => void }) {
  if (props.snapshots.length === 0) return <Empty>This job has no snapshots to restore.</Empty>;
  return (
    <>
      <h2>Which snapshot?</h2>
      <div class="choices">
        {props.snapshots.map((s) => (
          <label key={s.id} class={`choice ${props.selected === s.id ? 'chosen' : ''}`} data-snapshot={s.id}>
            <input type="radio" name="snapshot" checked={props.selected === s.id} onChange={() => props.onSelect(s.id)} />
            <span class="mono">{shortId(s.id)}</span>
            <span>{formatTime(s.time)}</span>
            <span class="muted">{s.kind ?? 'volume'} · {formatBytes(s.size)}</span>
            <span>{s.tags?.map((tag) => <span key={tag} class="tag">{tag}</span>)}</span>
          </label>
        ))}
      </div>
      <Nav onNext={props.onNext} nextDisabled={!props.selected} />
    </>
  );
}

function PickFiles(props: { job: string; snapshot: SnapshotEntry; include: Set<string>; setInclude: (s: Set<string>) => void; onBack: () => void; onNext: () => void }) {
  const [path, setPath] = useState(props.snapshot.paths?.length === 1 ? props.snapshot.paths[0]! : '/');
  const toggle = (entry: string) => {
    const next = new Set(props.include);
    if (next.has(entry)) next.delete(entry);
    else next.add(entry);
    props.setInclude(next);
  };
  return (
    <>
      <h2>What to restore?</h2>
      <p class="muted">Tick folders and files to restore only those; tick nothing to restore the whole snapshot.</p>
      <FileBrowser job={props.job} snapshot={props.snapshot.id} path={path} onOpen={setPath} selected={props.include} onToggle={toggle} />
      <div class="selection">
        {props.include.size === 0 ? <span>The whole snapshot</span> : [...props.include].map((p) => <span key={p} class="tag mono">{p}</span>)}
      </div>
      <Nav onBack={props.onBack} onNext={props.onNext} />
    </>
  );
}

function PickTarget(props: {
  snapshot: SnapshotEntry;
  to: string;
  setTo: (to: string) => void;
  overwrite: Overwrite;
  setOverwrite: (o: Overwrite) => void;
  onBack: () => void;
  onNext: () => void;
}) {
  const isFiles = props.snapshot.kind === 'files';
  const absolute = props.to.startsWith('/');
  return (
    <>
      <h2>Where to?</h2>
      <label class="field">
        <span>{isFiles ? 'Folder to restore into (paths keep their full snapshot path below it)' : 'Image file or block device to write'}</span>
        <input name="to" class="mono" placeholder={isFiles ? '/srv/restore' : '/dev/sdb or /srv/disk.img'} value={props.to} onInput={(e) => props.setTo(e.currentTarget.value.trim())} />
      </label>
      {props.to && !absolute && <div class="note">Give an absolute path (it starts with /).</div>}
      {isFiles && (
        <label class="field">
          <span>Files that already exist there</span>
          <select name="overwrite" value={props.overwrite} onChange={(e) => props.setOverwrite(e.currentTarget.value as Overwrite)}>
            <option value="if-changed">replace those that differ from the snapshot</option>
            <option value="always">replace them all</option>
            <option value="never">keep them</option>
          </select>
        </label>
      )}
      <Nav onBack={props.onBack} onNext={props.onNext} nextDisabled={!absolute} nextLabel="Preview" nextAction="preview" />
    </>
  );
}

function Preview(props: {
  job: string;
  request: Pick<RestoreRequest, 'snapshot' | 'to' | 'include'>;
  preview?: RestorePreview;
  setPreview: (p: RestorePreview) => void;
  overwrite?: Overwrite;
  onBack: () => void;
  onStarted: (restoreId: string) => void;
}) {
  const { request } = props;
  const fetched = useFetch(() => api.previewRestore(props.job, request).then((p) => (props.setPreview(p), p)), [request.snapshot, request.to, request.include?.join('\n')]);
  const preview = fetched.data;
  const [device, setDevice] = useState('');
  const [replace, setReplace] = useState(false);
  const [error, setError] = useState<string>();
  const [starting, setStarting] = useState(false);
  if (fetched.error) return (<><ErrorNote error={fetched.error} /><Nav onBack={props.onBack} /></>);
  if (!preview) return <Loading />;
  const imageOverwrite = preview.kind === 'file' || preview.kind === 'device';
  const ready = (!preview.needsDeviceConfirmation || device === preview.to) && (!imageOverwrite || !preview.exists || replace || preview.needsDeviceConfirmation);
  const start = async () => {
    setStarting(true);
    try {
      const body: RestoreRequest = { ...request, ...(request.include && { include: request.include.map(literalPattern) }), ...(props.overwrite && { overwrite: props.overwrite }) };
      if (imageOverwrite && preview.exists) body.force = true;
      if (preview.needsDeviceConfirmation) body.confirmDevice = device;
      props.onStarted((await api.restore(props.job, body)).restoreId);
    } catch (failure) {
      setError((failure as Error).message);
      setStarting(false);
    }
  };
  return (
    <>
      <h2>Check before restoring</h2>
      <dl class="facts">
        <div class="wide"><dt>Destination</dt><dd class="mono">{preview.to}</dd></div>
        <div><dt>It is</dt><dd>{describeKind(preview)}</dd></div>
        {preview.size !== undefined && <div><dt>Size</dt><dd>{formatBytes(preview.size)}</dd></div>}
        {preview.mounted && <div><dt>Mounted</dt><dd class="warn">yes</dd></div>}
      </dl>
      <OverwriteList preview={preview} />
      {imageOverwrite && preview.exists && !preview.needsDeviceConfirmation && (
        <label class="check-field"><input type="checkbox" name="replace" checked={replace} onChange={(e) => setReplace(e.currentTarget.checked)} /> Replace {preview.to}</label>
      )}
      {preview.needsDeviceConfirmation && (
        <label class="field danger-field">
          <span>Everything on this device will be replaced. Type its name, <code>{preview.to}</code>, to confirm.</span>
          <input name="confirm-device" class="mono" autoComplete="off" spellcheck={false} value={device} onInput={(e) => setDevice(e.currentTarget.value.trim())} />
        </label>
      )}
      <ErrorNote error={error} />
      <Nav onBack={props.onBack} onNext={start} nextDisabled={!ready || starting} nextLabel="Restore" nextAction="start-restore" />
    </>
  );
}

function describeKind(preview: RestorePreview): string {
  const kinds = { file: 'an existing file', device: 'a block device', folder: 'an existing folder', new: 'new (nothing there yet)' };
  return kinds[preview.kind];
}

function OverwriteList(props: { preview: RestorePreview }) {
  const { overwrites } = props.preview;
  if (overwrites.length === 0) return <div class="note note-ok" data-overwrites="0">Nothing that exists will be overwritten.</div>;
  return (
    <div class="note note-warn" data-overwrites={overwrites.length}>
      <strong>{overwrites.length >= 100 ? 'At least 100 paths' : `${overwrites.length} ${overwrites.length === 1 ? 'path' : 'paths'}`} will be overwritten:</strong>
      <ul class="overwrites mono small">{overwrites.map((path) => <li key={path}>{path}</li>)}</ul>
    </div>
  );
}

/** The restore's progress (events) and end (event, or the status URL polled in case an event was missed). */
function Running(props: { job: string; restoreId: string; to: string }) {
  const pushed = useLive((s) => s.restores[props.restoreId]);
  const progress = useLive((s) => s.progress[taskKey(props.job, 'restore')]);
  const [polled, setPolled] = useState<RestoreState>();
  const state = pushed?.state !== 'running' && pushed ? pushed : polled?.state !== 'running' && polled ? polled : pushed ?? polled;
  useEffect(() => {
    if (state && state.state !== 'running') return;
    const timer = setInterval(() => api.restoreState(props.restoreId).then(setPolled, () => undefined), 2000);
    return () => clearInterval(timer);
  }, [state?.state]);
  if (!state || state.state === 'running') {
    return (
      <div class="restore-running" data-restore-state="running">
        <h2>Restoring to <span class="mono">{props.to}</span>…</h2>
        <TaskProgress running={progress ?? { job: props.job, task: 'restore', since: new Date().toISOString() }} />
      </div>
    );
  }
  const error = typeof state.error === 'string' ? state.error : state.error?.message;
  return (
    <div class={`restore-result restore-${state.state}`} data-restore-state={state.state}>
      <h2>{state.state === 'done' ? 'Restored' : 'The restore failed'}</h2>
      {state.state === 'done' ? <p>Restored to <span class="mono">{props.to}</span>.</p> : <ErrorNote error={error ?? 'unknown error'} />}
      {state.result && <ResultFacts result={state.result} />}
      <div class="wizard-nav"><Link class="button" href={href('jobs', props.job)}>Back to the snapshots</Link></div>
    </div>
  );
}

/** `bytesWritten` → `bytes written`. */
function words(key: string): string {
  return key.replace(/([a-z])([A-Z])/g, (_, a: string, b: string) => `${a} ${b.toLowerCase()}`);
}

/** The figures `cairn restore --json` printed, those that are numbers or short words. */
function ResultFacts(props: { result: Record<string, unknown> }) {
  const rows = Object.entries(props.result).filter(([, v]) => typeof v === 'number' || (typeof v === 'string' && v.length < 100));
  return (
    <dl class="facts">
      {rows.map(([key, value]) => (
        <div key={key}><dt>{words(key)}</dt><dd class={typeof value === 'string' ? 'mono small' : ''}>{typeof value === 'number' && /bytes/i.test(key) ? formatBytes(value) : String(value)}</dd></div>
      ))}
    </dl>
  );
}
