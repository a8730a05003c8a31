import { useEffect, useState } from 'preact/hooks';
import { onUnauthorized } from './api';
import { connectLive, useLive } from './live';
import { Link, match, useLocation } from './router';
import { JobsPage } from './pages/jobs';
import { SnapshotsPage } from './pages/snapshots';
import { SnapshotPage } from './pages/snapshot';
import { RestorePage } from './pages/restore';
import { ChecksPage } from './pages/checks';
import { LogPage } from './pages/log';

interface Route {
  pattern: string;
  section: 'jobs' | 'checks' | 'log';
  render: (params: Record<string, string>) => preact.JSX.Element;
}

const ROUTES: Route[] = [
  { pattern: '/', section: 'jobs', render: () => <JobsPage /> },
  { pattern: '/jobs/:job', section: 'jobs', render: (p) => <SnapshotsPage job={p.job!} /> },
  { pattern: '/jobs/:job/snapshots/:id', section: 'jobs', render: (p) => <SnapshotPage job={p.job!} id={p.id!} /> },
  { pattern: '/jobs/:job/restore', section: 'jobs', render: (p) => <RestorePage job={p.job!} /> },
  { pattern: '/checks', section: 'checks', render: () => <ChecksPage /> },
  { pattern: '/log', section: 'log', render: () => <LogPage /> },
];

function Sidebar(props: { section?: string }) {
  const connected = useLive((s) => s.connected);
  const status = useLive((s) => s.status);
  const item = (section: string, to: string, label: string) => (
    <Link href={to} class={`nav-item ${props.section === section ? 'active' : ''}`} aria-current={props.section === section ? 'page' : undefined}>
      {label}
    </Link>
  );
  return (
    <nav class="sidebar">
      <div class="brand">
        <img src="/favicon.svg" alt="" width={28} height={28} />
        <span>cairn</span>
      </div>
      {item('jobs', '/', 'Jobs')}
      {item('checks', '/checks', 'Checks')}
      {item('log', '/log', 'Log')}
      <div class="sidebar-foot">
        <span class={`dot ${connected ? 'dot-on' : 'dot-off'}`} />
        {connected ? 'live' : 'reconnecting…'}
        {status && <div class="muted small">daemon pid {status.daemon.pid} on {status.daemon.hostname}</div>}
      </div>
    </nav>
  );
}

/** Shown instead of the page when the daemon refuses the session (token changed, cookie gone). */
function SignedOut() {
  return (
    <main class="main">
      <div class="card signed-out">
        <h1>Not signed in</h1>
        <p>The daemon refused this browser's session. Open the address <code>cairn ui</code> prints: it carries the token that signs you in.</p>
      </div>
    </main>
  );
}

export function App() {
  const location = useLocation();
  const [signedOut, setSignedOut] = useState(false);
  useEffect(() => {
    connectLive();
    return onUnauthorized(() => setSignedOut(true));
  }, []);
  let page: preact.JSX.Element = <NotFound />;
  let section: string | undefined;
  for (const route of ROUTES) {
    const params = match(route.pattern, location.path);
    if (params) {
      page = route.render(params);
      section = route.section;
      break;
    }
  }
  return (
    <div class="shell">
      <Sidebar section={section} />
      {signedOut ? <SignedOut /> : <main class="main" key={location.path}>{page}</main>}
    </div>
  );
}

function NotFound() {
  return (
    <div class="card">
      <h1>No such page</h1>
      <p><Link href="/">Back to the jobs</Link></p>
    </div>
  );
}
