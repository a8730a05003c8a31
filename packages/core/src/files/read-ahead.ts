import type { TreeEntry } from './tree.js';
import type { TreeReader } from './tree-reader.js';

/** Tree reads started ahead of need at most; past that, trees are read when they are needed. */
const READS_AHEAD = 32;

/**
 * Reads trees the walk will need next while it works on the current one: a walk that awaits
 * each tree in turn waits one round trip per folder (50 ms each on S3 adds up to minutes
 * over a large tree). Walks call `ahead` with the subtrees of a folder they are about to
 * visit, and `read` for each tree when they get to it.
 */
export class TreeReadAhead {
  readonly #started = new Map<string, Promise<TreeEntry[]>>();

  constructor(private readonly reader: TreeReader) {}

  read(id: string): Promise<TreeEntry[]> {
    const started = this.#started.get(id);
    if (!started) return this.reader.read(id);
    this.#started.delete(id);
    return started;
  }

  /** Starts reading these trees, while fewer than READS_AHEAD are in flight or unclaimed. */
  ahead(ids: Iterable<string>): void {
    for (const id of ids) {
      if (this.#started.size >= READS_AHEAD) return;
      if (this.#started.has(id)) continue;
      const reading = this.reader.read(id);
      // A failure is reported to whoever reads the tree; one never read is no failure of the walk.
      reading.catch(() => undefined);
      this.#started.set(id, reading);
    }
  }
}
