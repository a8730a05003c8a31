import { inject, injectable } from './vendor.js';
import { Logger } from './services.js';
import { HookTapError, SnapshotAbortedError } from './errors.js';
import type { SnapshotVeto } from './hooks.js';

/** The part of a tapable hook the runner needs: its name and its taps in call order. */
interface TappableHook<Args extends unknown[]> {
  readonly name: string | undefined;
  readonly taps: ReadonlyArray<{ name: string; type: 'sync' | 'async' | 'promise'; fn: Function }>;
  /** Only here to tie `Args` to the hook's arguments. */
  promise?(...args: Args): Promise<unknown>;
  call?(...args: Args): unknown;
}

/** A tap of an `after` hook that threw: logged, and reported with the operation's result. */
export interface TapFailure {
  hook: string;
  tap: string;
  error: unknown;
}

/**
 * Calls hooks tap by tap, so that a tap's error is handled the same way everywhere and always
 * names the tap: in a `before` hook the first error aborts (as a HookTapError); in an `after`
 * hook every tap runs, and errors are logged and returned. Taps are called directly, in the
 * order tapable keeps them (by stage, then registration), so interceptors' `call` is not run.
 */
@injectable()
export class HookRunner {
  constructor(@inject(Logger) private readonly logger: Logger) {}

  /** Runs the taps of a hook that comes before the work it guards; the first failure aborts. */
  async before<Args extends unknown[]>(hook: TappableHook<Args>, ...args: Args): Promise<void> {
    for (const tap of hook.taps) {
      try {
        await callTap(tap, args);
      } catch (err) {
        throw new HookTapError(hookName(hook), tap.name, err);
      }
    }
  }

  /** Runs a bail hook whose taps may return `{ abort: reason }`; the first veto aborts with SnapshotAbortedError. */
  async veto<Args extends unknown[]>(hook: TappableHook<Args>, ...args: Args): Promise<void> {
    for (const tap of hook.taps) {
      let result: unknown;
      try {
        result = await callTap(tap, args);
      } catch (err) {
        throw new HookTapError(hookName(hook), tap.name, err);
      }
      const veto = result as SnapshotVeto | undefined;
      if (veto !== undefined && veto !== null) throw new SnapshotAbortedError(tap.name, String(veto.abort ?? veto));
    }
  }

  /** Runs every tap of a hook that reports what happened; failures are logged with the tap's name and returned. */
  async after<Args extends unknown[]>(hook: TappableHook<Args>, ...args: Args): Promise<TapFailure[]> {
    return this.afterInto([], hook, ...args);
  }

  /** `after`, pushing each failure into `failures` as it happens, so that later taps can see the earlier ones fail. */
  async afterInto<Args extends unknown[]>(failures: TapFailure[], hook: TappableHook<Args>, ...args: Args): Promise<TapFailure[]> {
    for (const tap of hook.taps) {
      try {
        await callTap(tap, args);
      } catch (error) {
        const failure = { hook: hookName(hook), tap: tap.name, error };
        this.logger.error(describeTapFailure(failure));
        failures.push(failure);
      }
    }
    return failures;
  }
}

export function describeTapFailure(failure: TapFailure): string {
  return `${failure.tap} (${failure.hook}): ${(failure.error as Error)?.message ?? String(failure.error)}`;
}

function hookName(hook: { name: string | undefined }): string {
  return hook.name ?? 'hook';
}

function callTap(tap: { type: 'sync' | 'async' | 'promise'; fn: Function }, args: unknown[]): Promise<unknown> {
  if (tap.type === 'async') {
    return new Promise((resolve, reject) => tap.fn(...args, (err: unknown, result: unknown) => (err ? reject(err) : resolve(result))));
  }
  // A sync tap's throw and a promise tap's rejection both end up as a rejection here.
  return Promise.resolve().then(() => tap.fn(...args));
}
