/** How a trip answers each call: its result, or the Error that call alone meets. */
export type TripOutcome<O> = O | Error;

interface PendingCall<I, O> {
  input: I;
  resolve(output: O): void;
  reject(error: unknown): void;
}

/**
 * Gathers the calls made in one turn of the event loop into trips of up to `callsPerTrip`
 * calls (a trip also leaves once it is full). Each trip to another thread wakes it, and on a
 * 2-core virtual machine a wake-up per small file (and the woken thread taking the core) cost
 * the main thread a third of a small-files backup. `send` answers a trip's calls in order; a
 * call whose answer is an Error rejects with it, and a failed trip rejects all of its calls.
 */
export class TripBatcher<I, O> {
  #pending: Array<PendingCall<I, O>> = [];
  #scheduled = false;

  constructor(
    private readonly callsPerTrip: number,
    private readonly send: (inputs: I[]) => Promise<Array<TripOutcome<O>>>,
  ) {}

  call(input: I): Promise<O> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ input, resolve, reject });
      if (this.#pending.length >= this.callsPerTrip) this.#leave();
      else if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => {
          this.#scheduled = false;
          this.#leave();
        });
      }
    });
  }

  #leave(): void {
    if (this.#pending.length === 0) return;
    const calls = this.#pending;
    this.#pending = [];
    let trip: Promise<Array<TripOutcome<O>>>;
    try {
      trip = this.send(calls.map((c) => c.input));
    } catch (err) {
      trip = Promise.reject(err);
    }
    trip.then(
      (outcomes) => calls.forEach((c, i) => (outcomes[i] instanceof Error ? c.reject(outcomes[i]) : c.resolve(outcomes[i] as O))),
      (err: unknown) => calls.forEach((c) => c.reject(err)),
    );
  }
}
