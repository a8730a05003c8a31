import type { ComponentChildren } from 'preact';

export function ErrorNote(props: { error?: Error | string; children?: ComponentChildren }) {
  if (!props.error && !props.children) return null;
  const message = typeof props.error === 'string' ? props.error : props.error?.message;
  return (
    <div class="note note-error" role="alert">
      {message}
      {props.children}
    </div>
  );
}

export function Loading() {
  return <div class="loading muted">Loading…</div>;
}

export function Empty(props: { children: ComponentChildren }) {
  return <div class="empty muted">{props.children}</div>;
}
