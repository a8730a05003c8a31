import { DamageError } from '../errors.js';
import { Keys } from '../repository/format.js';
import type { BlobIndex, BlobLocation, Repository } from '../repository/repository.js';
import { MAX_READ } from '../pipeline/fetch-groups.js';
import type { WorkerPool } from '../pipeline/worker-pool.js';

/** Ranged reads in flight at once. */
const READS_IN_FLIGHT = 8;
/** Plaintext bytes fetched ahead of the consumer: what bounds memory (plus one group). */
const BYTES_AHEAD = 64 * 1024 * 1024;
/** Blobs per ranged read: small files' chunks sit side by side in a pack, and one read takes many. */
const BLOBS_PER_READ = 256;

/** A blob a reader asks for, by id (hex). */
export interface BlobRequest {
  id: string;
}

interface ReadGroup {
  pack: string;
  offset: number;
  length: number;
  rawLength: number;
  blobs: Array<{ id: string; location: BlobLocation }>;
  /** A blob no index names: the group stands for it alone and fails when read. */
  missing?: string;
}

/**
 * Fetches blobs in the order they are asked for: neighbours in one pack come with one ranged
 * read, several reads are in flight, each blob is opened (decrypted, decompressed) in the
 * worker pool and verified against its id. At most about BYTES_AHEAD bytes wait for the
 * consumer, whatever the size of what is read.
 */
export class BlobStream {
  constructor(
    private readonly repository: Repository,
    private readonly index: BlobIndex,
    private readonly pool: WorkerPool,
  ) {}

  /** The plaintext of each requested blob, in order. A missing or damaged blob rejects with DamageError. */
  async *read(requests: Iterable<BlobRequest>): AsyncGenerator<Buffer> {
    const groups = this.#groups(requests);
    const queue: Array<{ group: ReadGroup; blobs: Promise<Buffer[]> }> = [];
    let bytesAhead = 0;
    let exhausted = false;
    const fill = () => {
      while (!exhausted && queue.length < READS_IN_FLIGHT && bytesAhead < BYTES_AHEAD) {
        const next = groups.next();
        if (next.done) exhausted = true;
        else {
          const blobs = this.#fetch(next.value);
          // Awaited in order below; a consumer that stops early must not leave an unhandled rejection.
          blobs.catch(() => undefined);
          queue.push({ group: next.value, blobs });
          bytesAhead += next.value.rawLength;
        }
      }
    };
    fill();
    while (queue.length > 0) {
      const { group, blobs } = queue.shift()!;
      const plain = await blobs;
      bytesAhead -= group.rawLength;
      fill();
      yield* plain;
    }
  }

  /** Requests grouped into ranged reads: consecutive blobs that follow each other in one pack. */
  *#groups(requests: Iterable<BlobRequest>): Generator<ReadGroup> {
    let group: ReadGroup | undefined;
    for (const { id } of requests) {
      const location = this.index.get(id);
      if (!location) {
        if (group) yield group;
        group = undefined;
        yield { pack: '', offset: 0, length: 0, rawLength: 0, blobs: [], missing: id };
        continue;
      }
      if (group && joins(group, location)) {
        group.length += location.length;
        group.rawLength += location.rawLength;
        group.blobs.push({ id, location });
        continue;
      }
      if (group) yield group;
      group = { pack: location.pack, offset: location.offset, length: location.length, rawLength: location.rawLength, blobs: [{ id, location }] };
    }
    if (group) yield group;
  }

  async #fetch(group: ReadGroup): Promise<Buffer[]> {
    if (group.missing !== undefined) throw new DamageError(`blob ${group.missing.slice(0, 12)} is not in any index (\`cairn check\` tells more, \`cairn repair index\` may help)`);
    const bytes = await this.repository.readPack(group.pack, { offset: group.offset, length: group.length });
    return Promise.all(
      group.blobs.map(async ({ id, location }) => {
        const start = location.offset - group.offset;
        try {
          return await this.pool.open(bytes.subarray(start, start + location.length), location.rawLength, id);
        } catch (err) {
          if (err instanceof DamageError) throw new DamageError(`pack ${Keys.pack(group.pack)} is damaged: ${err.message}`, { cause: err });
          throw err;
        }
      }),
    );
  }
}

function joins(group: ReadGroup, location: BlobLocation): boolean {
  return group.pack === location.pack && group.offset + group.length === location.offset && group.blobs.length < BLOBS_PER_READ && group.length + location.length <= MAX_READ;
}
