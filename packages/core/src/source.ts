import type { IDisposable } from './lifecycle.js';
import type { OpenedFileTree } from './files/file-source.js';

/** A byte range of the logical image that holds data worth storing. */
export interface Extent {
  offset: number;
  length: number;
}

/** How one part of a volume is imaged. */
export type ImagingMode = 'exact' | 'used';

export interface PartitionLayout {
  index: number;
  offset: number;
  size: number;
  /** Partition type as the table writes it: an MBR type byte (`0x83`) or a GPT type GUID. */
  type?: string;
  name?: string;
  /** GPT unique partition GUID. */
  guid?: string;
  /** MBR active flag. */
  bootable?: boolean;
  filesystem?: string;
  mode: ImagingMode;
  /** Bytes the filesystem reports in use, when known. */
  usedBytes?: number;
  /** Why the mode differs from the one asked for (for example "unrecognised filesystem, imaged exactly"). */
  note?: string;
  /** The volume group and logical volumes, when the partition is an LVM2 physical volume. */
  lvm?: LvmLayout;
}

/**
 * An LVM2 physical volume as the newest valid copy of its metadata describes it. Optional on
 * layouts: manifests written before it (and of other filesystems) have none.
 */
export interface LvmLayout {
  vg: { name: string; uuid: string; seqno: number; /** Bytes. */ extentSize: number };
  /** This physical volume: its name in the metadata (`pv0`), uuid, where extents start (bytes) and how many it has. */
  pv: { name: string; uuid: string; peStart: number; peCount: number };
  logicalVolumes: LvmLogicalVolumeLayout[];
}

export interface LvmLogicalVolumeLayout {
  name: string;
  uuid: string;
  /** Bytes. */
  size: number;
  segments: LvmSegmentLayout[];
  /** What the probe found at the start of the LV, when all of it lies on this PV. */
  filesystem?: string;
  /** How this LV's extents on this PV were imaged. */
  mode: ImagingMode;
  /** Bytes of the LV stored (used mode). */
  usedBytes?: number;
  /** Why the LV was imaged exactly. */
  note?: string;
}

export interface LvmSegmentLayout {
  /** First logical extent of the LV this segment covers, and how many. */
  startExtent: number;
  extentCount: number;
  /** The segment type as the metadata names it (`striped`, `thin`, `raid1`, ...). */
  type: string;
  /** Stripe size in bytes, for more than one stripe. */
  stripeSize?: number;
  /** Where each stripe starts: a PV name and its physical extent. */
  areas: Array<{ pv: string; extent: number }>;
}

/**
 * What the source looked like when it was read. Stored in the snapshot manifest as is, so
 * it must be plain JSON.
 */
export interface VolumeLayout {
  /** Total size of the logical image in bytes. */
  size: number;
  /** Logical sector size of the device (512 for image files). */
  sectorSize: number;
  kind: 'file' | 'block-device';
  /** `none` for a bare filesystem or unrecognised content. */
  partitionTable: { type: 'none' | 'mbr' | 'gpt'; [detail: string]: unknown };
  /** The volume as one filesystem when there is no partition table. */
  filesystem?: string;
  mode: ImagingMode;
  partitions: PartitionLayout[];
  note?: string;
  /** The volume group and logical volumes, when the volume is a bare LVM2 physical volume. */
  lvm?: LvmLayout;
}

/**
 * An opened source. The core reads it chunk by chunk; bytes outside `extents` are never
 * read and restore as zeros (or are skipped on a block device).
 */
export interface OpenedSource extends IDisposable {
  /** Stable description for the snapshot, e.g. the path that was read. */
  readonly path: string;
  readonly layout: VolumeLayout;
  /** Sorted, non-overlapping ranges that hold data; `[0, size)` in exact mode. */
  readonly extents: readonly Extent[];
  /** Things the user should know (device mounted read-write, metadata fallback); printed as warnings. */
  readonly warnings: readonly string[];
  /**
   * Reads `length` bytes at `offset` into `into` (at index 0). Reading past the end is an error.
   * The core may read a range more than once, and may have two reads in progress at a time.
   */
  read(into: Uint8Array, offset: number, length: number): Promise<void>;
}

export interface SourceSettings {
  type: string;
  [setting: string]: unknown;
}

export interface SourceFactory {
  /** A volume source opens an `OpenedSource`; a file source (see files/file-source.ts) an `OpenedFileTree`. */
  open(settings: SourceSettings, context: SourceOpenContext): Promise<OpenedSource | OpenedFileTree>;
}

export interface SourceOpenContext {
  /** Folder that relative paths in the job file are resolved against. */
  baseDir: string;
}
