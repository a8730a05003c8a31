import { TripBatcher, type Posix } from '@cairn/core';

type WholeRead = Awaited<ReturnType<Posix['readWhole']>>;

/**
 * Small-file reads gathered into one trip to the thread pool at most (Posix.readWholeMany,
 * through core's TripBatcher). Trips stay small so that several still run at once on the pool's
 * threads when the files are not cached.
 */
const FILES_PER_TRIP = 8;

/** Reads small files whole as Posix.readWhole does, several to a trip (see TripBatcher): each rejects with its own file's error. */
export class WholeReads {
  readonly #trips: TripBatcher<{ path: Buffer; into: Uint8Array }, WholeRead>;

  constructor(posix: Pick<Posix, 'readWholeMany'>) {
    this.#trips = new TripBatcher<{ path: Buffer; into: Uint8Array }, WholeRead>(FILES_PER_TRIP, (reads) =>
      posix.readWholeMany(
        reads.map((r) => r.path),
        reads.map((r) => r.into),
      ),
    );
  }

  read(path: Buffer, into: Uint8Array): Promise<WholeRead> {
    return this.#trips.call({ path, into });
  }
}
