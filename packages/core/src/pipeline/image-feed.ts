/**
 * Where one piece of the image stands with the image hasher: `posted` settles once it has
 * been handed over (every earlier piece was handed over before it), `hashed` once the hasher
 * has taken it in.
 */
export interface FeedTicket {
  posted: Promise<void>;
  hashed: Promise<unknown>;
}

/**
 * Hands the pieces of the image to the image hasher in image order, while the chunks
 * themselves are read and stored concurrently. Each piece joins a chain: its `prepare` step
 * runs once every earlier piece has been posted, then `post` hands this one over.
 */
export class ImageFeed {
  #tail: Promise<void> = Promise.resolve();

  enqueue(prepare: () => unknown, post: () => Promise<unknown>): FeedTicket {
    let acknowledged: Promise<unknown> = Promise.resolve();
    const posted = this.#tail.then(prepare).then(() => {
      acknowledged = post();
    });
    // A failed piece fails the run through the chunk that owns it; the chain only carries on.
    // Nothing may await a piece whose read failed (its chunk never reaches the store), and a
    // rejection nobody handles ends the process: both promises are marked handled here, and
    // whoever awaits them still sees the failure.
    posted.catch(() => undefined);
    const hashed = posted.then(() => acknowledged);
    hashed.catch(() => undefined);
    this.#tail = posted;
    return { posted, hashed };
  }

  /** Settles once every piece enqueued so far has been posted; rejects if the last one failed. */
  posted(): Promise<void> {
    return this.#tail;
  }
}
