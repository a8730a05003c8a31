import type { OpenedSource } from '../source.js';

/** A source that images `image` from memory (its `extents`, by default all of it): for tests without a volume plugin. */
export function memorySource(image: Uint8Array, extents = [{ offset: 0, length: image.length }]): OpenedSource {
  return {
    path: 'memory',
    layout: { size: image.length, sectorSize: 512, kind: 'file', partitionTable: { type: 'none' }, mode: 'exact', partitions: [] },
    extents,
    warnings: [],
    async read(into, offset, length) {
      into.set(image.subarray(offset, offset + length));
    },
    dispose() {},
  };
}
