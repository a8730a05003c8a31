import { useEffect, useState } from 'preact/hooks';

export interface Fetched<T> {
  data?: T;
  error?: Error;
  loading: boolean;
}

/**
 * Loads `load()` whenever a dependency changes (the live state's version among them, so data
 * follows what the daemon did). The data shown stays until the new answer arrives: pages
 * don't flicker while they refresh.
 */
export function useFetch<T>(load: () => Promise<T>, deps: unknown[]): Fetched<T> & { reload: () => void } {
  const [state, setState] = useState<Fetched<T>>({ loading: true });
  const [nonce, setNonce] = useState(0);
  useEffect(() => {
    let current = true;
    setState((previous) => ({ ...previous, loading: true }));
    load().then(
      (data) => current && setState({ data, loading: false }),
      (error: Error) => current && setState((previous) => ({ data: previous.data, error, loading: false })),
    );
    return () => void (current = false);
  }, [...deps, nonce]);
  return { ...state, reload: () => setNonce((n) => n + 1) };
}
