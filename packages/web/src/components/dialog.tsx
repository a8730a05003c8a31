import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';

/** A modal dialog (the native <dialog>: focus stays inside, Escape closes it). */
export function Dialog(props: { title: string; onClose: () => void; children: ComponentChildren; footer: ComponentChildren }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current!;
    dialog.showModal();
    return () => dialog.close();
  }, []);
  return (
    <dialog ref={ref} class="dialog" onCancel={(event) => (event.preventDefault(), props.onClose())} aria-label={props.title}>
      <h2>{props.title}</h2>
      <div class="dialog-body">{props.children}</div>
      <div class="dialog-footer">{props.footer}</div>
    </dialog>
  );
}
