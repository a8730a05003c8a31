import type { Extent, ImagingMode } from '@cairn/core';

/** Positional, read-only access to a volume, as a used-block mapper needs it. */
export interface VolumeReader {
  readonly size: number;
  read(into: Uint8Array, offset: number, length: number): Promise<void>;
}

/**
 * Reads a filesystem's allocation metadata and returns the sorted, non-overlapping byte
 * ranges in use (metadata included); everything else restores as zeros.
 */
export type UsedBlockMapper = (volume: VolumeReader) => Promise<Extent[]>;

/**
 * Used-block mappers by the filesystem name `probeVolume` reports. A filesystem without one
 * is imaged exactly, with a note saying so.
 */
const usedBlockMappers: ReadonlyMap<string, UsedBlockMapper> = new Map();

export interface ExtentPlan {
  /** The mode actually applied. */
  mode: ImagingMode;
  extents: Extent[];
  /** Why `mode` differs from the one asked for. */
  note?: string;
}

function wholeVolume(size: number): Extent[] {
  return size > 0 ? [{ offset: 0, length: size }] : [];
}

export async function planExtents(requested: ImagingMode, filesystem: string | undefined, volume: VolumeReader): Promise<ExtentPlan> {
  if (requested === 'exact') return { mode: 'exact', extents: wholeVolume(volume.size) };
  const mapper = filesystem === undefined ? undefined : usedBlockMappers.get(filesystem);
  if (mapper) return { mode: 'used', extents: await mapper(volume) };
  return {
    mode: 'exact',
    extents: wholeVolume(volume.size),
    note: `used-block maps are not available for ${filesystem ?? 'this volume'} yet; imaged exactly`,
  };
}
