import type { Extent, ImagingMode, LvmLayout, PartitionLayout, VolumeLayout } from '@cairn/core';
import { InconsistentMetadataError } from './filesystems/inconsistent.js';
import { mergeExtents } from './extent-list.js';
import { PROBE_LENGTH, probeVolume, type ProbeResult } from './probe.js';
import { PartitionTableError, checkNoOverlap, readGpt, readMbr, type PartitionEntry, type PartitionTable } from './partitions.js';

/** Positional, read-only access to a volume, as a used-block mapper needs it. */
export interface VolumeReader {
  readonly size: number;
  read(into: Uint8Array, offset: number, length: number): Promise<void>;
}

/** A used-block map with what the mapper found out about the volume's structure, kept on its layout. */
export interface UsedBlockMap {
  extents: Extent[];
  /** An LVM2 physical volume's volume group and logical volumes. */
  lvm?: LvmLayout;
}

/**
 * Reads a filesystem's allocation metadata and returns the sorted, non-overlapping byte
 * ranges in use (metadata included), relative to the filesystem's start; everything else
 * restores as zeros. Throws InconsistentMetadataError when the metadata cannot be trusted.
 * A mapper with details to record returns a UsedBlockMap instead of the bare ranges.
 */
export type UsedBlockMapper = (volume: VolumeReader) => Promise<Extent[] | UsedBlockMap>;

/** Used-block mappers by the filesystem name `probeVolume` reports. */
export type UsedBlockMappers = ReadonlyMap<string, UsedBlockMapper>;

export interface ExtentPlan {
  /** The mode actually applied. */
  mode: ImagingMode;
  extents: Extent[];
  /** Why `mode` differs from the one asked for. */
  note?: string;
  lvm?: LvmLayout;
}

function wholeVolume(size: number): Extent[] {
  return size > 0 ? [{ offset: 0, length: size }] : [];
}

/** Extents of one filesystem (a bare volume or one partition). */
export async function planExtents(requested: ImagingMode, filesystem: string | undefined, volume: VolumeReader, mappers: UsedBlockMappers): Promise<ExtentPlan> {
  if (requested === 'exact') return { mode: 'exact', extents: wholeVolume(volume.size) };
  const mapper = filesystem === undefined ? undefined : mappers.get(filesystem);
  if (!mapper) {
    const what = filesystem === undefined ? 'no recognised filesystem' : `no used-block map for ${filesystem}`;
    return { mode: 'exact', extents: wholeVolume(volume.size), note: `${what}; imaged exactly` };
  }
  try {
    const mapped = await mapper(volume);
    const { extents, lvm } = Array.isArray(mapped) ? { extents: mapped, lvm: undefined } : mapped;
    checkExtents(extents, volume.size, filesystem!);
    return { mode: 'used', extents, ...(lvm !== undefined && { lvm }) };
  } catch (err) {
    if (!(err instanceof InconsistentMetadataError)) throw err;
    return { mode: 'exact', extents: wholeVolume(volume.size), note: `${err.message}; imaged exactly` };
  }
}

/** A mapper's output is checked before it is trusted: a wrong map loses data. */
function checkExtents(extents: readonly Extent[], size: number, filesystem: string): void {
  let end = 0;
  for (const extent of extents) {
    if (!Number.isSafeInteger(extent.offset) || !Number.isSafeInteger(extent.length) || extent.length <= 0 || extent.offset < end || extent.offset + extent.length > size) {
      throw new InconsistentMetadataError(`${filesystem}: the used-block map has an invalid range (offset ${extent.offset}, length ${extent.length})`);
    }
    end = extent.offset + extent.length;
  }
}

export interface PartitionModes {
  [index: string]: { mode?: ImagingMode };
}

export interface VolumePlan {
  mode: ImagingMode;
  partitionTable: VolumeLayout['partitionTable'];
  filesystem?: string;
  partitions: PartitionLayout[];
  extents: Extent[];
  note?: string;
  lvm?: LvmLayout;
}

/** A window onto part of a volume, for reading one partition as if it were a volume. */
export function window(volume: VolumeReader, offset: number, size: number): VolumeReader {
  return {
    size,
    read(into, at, length) {
      if (at < 0 || at + length > size) throw new InconsistentMetadataError(`a read at ${at} (+${length}) goes past the end of the partition (${size} bytes)`);
      return volume.read(into, offset + at, length);
    },
  };
}

export async function readHead(volume: VolumeReader): Promise<Uint8Array> {
  const head = new Uint8Array(Math.min(volume.size, PROBE_LENGTH));
  await volume.read(head, 0, head.length);
  return head;
}

/**
 * Decides what to read: for a bare filesystem, its used blocks (or everything); for a whole
 * disk, the areas outside partitions exactly (boot code, gaps, GPT structures) and each
 * partition according to its filesystem and mode.
 */
export async function planVolume(volume: VolumeReader, probe: ProbeResult, requested: ImagingMode, overrides: PartitionModes, mappers: UsedBlockMappers): Promise<VolumePlan> {
  if (probe.partitionTable.type === 'none') {
    const plan = await planExtents(requested, probe.filesystem, volume, mappers);
    return {
      mode: plan.mode,
      partitionTable: probe.partitionTable,
      ...(probe.filesystem !== undefined && { filesystem: probe.filesystem }),
      partitions: [],
      extents: plan.extents,
      ...(plan.note !== undefined && { note: plan.note }),
      ...(plan.lvm !== undefined && { lvm: plan.lvm }),
    };
  }

  let table: PartitionTable;
  try {
    table = probe.partitionTable.type === 'gpt' ? await readGpt(volume, probe.sectorSize) : await readMbr(volume, probe.sectorSize);
    checkNoOverlap(table.entries);
  } catch (err) {
    if (!(err instanceof PartitionTableError)) throw err;
    return { mode: 'exact', partitionTable: probe.partitionTable, partitions: [], extents: wholeVolume(volume.size), note: `${err.message}; the whole disk was imaged exactly` };
  }

  const partitions: PartitionLayout[] = [];
  const extents: Extent[] = [];
  for (const entry of [...table.entries].sort((a, b) => a.offset - b.offset)) {
    const part = window(volume, entry.offset, entry.size);
    const filesystem = entry.size > 0 ? probeVolume(await readHead(part), probe.sectorSize).filesystem : undefined;
    const mode = overrides[String(entry.index)]?.mode ?? requested;
    const plan = await planExtents(mode, filesystem, part, mappers);
    extents.push(...plan.extents.map((e) => ({ offset: entry.offset + e.offset, length: e.length })));
    partitions.push(partitionLayout(entry, filesystem, plan));
  }
  const outside = gapsBetween(table.entries, volume.size);
  return {
    mode: requested,
    partitionTable: { type: table.type, ...table.details },
    partitions: partitions.sort((a, b) => a.index - b.index),
    extents: mergeExtents([...extents, ...outside]),
  };
}

function partitionLayout(entry: PartitionEntry, filesystem: string | undefined, plan: ExtentPlan): PartitionLayout {
  return {
    index: entry.index,
    offset: entry.offset,
    size: entry.size,
    type: entry.type,
    ...(entry.name && { name: entry.name }),
    ...(entry.guid && { guid: entry.guid }),
    ...(entry.bootable && { bootable: true }),
    ...(filesystem !== undefined && { filesystem }),
    mode: plan.mode,
    ...(plan.mode === 'used' && { usedBytes: plan.extents.reduce((n, e) => n + e.length, 0) }),
    ...(plan.note !== undefined && { note: plan.note }),
    ...(plan.lvm !== undefined && { lvm: plan.lvm }),
  };
}

/** Everything of the disk not inside a partition. */
function gapsBetween(entries: readonly PartitionEntry[], size: number): Extent[] {
  const gaps: Extent[] = [];
  let at = 0;
  for (const entry of [...entries].sort((a, b) => a.offset - b.offset)) {
    if (entry.offset > at) gaps.push({ offset: at, length: entry.offset - at });
    at = Math.max(at, entry.offset + entry.size);
  }
  if (size > at) gaps.push({ offset: at, length: size - at });
  return gaps;
}

