import type { Extent, LvmLayout, LvmLogicalVolumeLayout } from '@cairn/core';
import { mergeExtents } from '../extent-list.js';
import { planExtents, readHead, type UsedBlockMap, type UsedBlockMapper, type UsedBlockMappers, type VolumeReader } from '../extents.js';
import { probeVolume } from '../probe.js';
import { InconsistentMetadataError } from './inconsistent.js';
import { readMetadataCopy, readPvLabel, type PvLabel } from './lvm-label.js';
import { parseVolumeGroup, type LvmLogicalVolume, type LvmPhysicalVolume, type LvmSegment, type LvmVolumeGroup } from './lvm-vg.js';

/**
 * Used blocks of an LVM2 physical volume: the label, everything before the first extent, the
 * metadata areas and whatever lies past the last extent, exactly; each logical volume's
 * extents on this PV by the used-block map of the filesystem inside it (the LV read as one
 * volume, its segments concatenated, the map translated back to PV offsets); LVs this cannot
 * read as a whole (spanning other PVs, parts of thin pools, snapshots, RAID, mirrors, caches)
 * exactly, with the reason; unallocated extents not at all.
 */

const SECTOR = 512;

function fail(message: string): never {
  throw new InconsistentMetadataError(`LVM: ${message}`);
}

/** A piece of an LV that is contiguous on the PV. */
interface Piece {
  lvOffset: number;
  pvOffset: number;
  length: number;
}

/** Where an LV's bytes lie on the PV, for an LV all of whose segments are striped areas of this PV. */
export class LogicalVolumeMap {
  readonly size: number;

  constructor(
    private readonly lv: LvmLogicalVolume,
    private readonly extentBytes: number,
    private readonly peStartBytes: number,
  ) {
    this.size = lv.extentCount * extentBytes;
  }

  /** The PV pieces of the LV's bytes [offset, offset + length). */
  *pieces(offset: number, length: number): Generator<Piece> {
    const end = offset + length;
    let at = offset;
    while (at < end) {
      const segment = this.segmentAt(at);
      const segmentStart = segment.startExtent * this.extentBytes;
      const segmentEnd = segmentStart + segment.extentCount * this.extentBytes;
      const piece = this.pieceInSegment(segment, at - segmentStart, Math.min(end, segmentEnd) - at);
      yield { lvOffset: at, pvOffset: piece.pvOffset, length: piece.length };
      at += piece.length;
    }
  }

  private segmentAt(offset: number): LvmSegment {
    const extent = Math.floor(offset / this.extentBytes);
    const segment = this.lv.segments.find((s) => extent >= s.startExtent && extent < s.startExtent + s.extentCount);
    if (!segment) fail(`LV ${this.lv.name}: no segment holds byte ${offset}`);
    return segment;
  }

  /** Stripes take turns, stripeSize sectors each; one stripe is one run. */
  private pieceInSegment(segment: LvmSegment, at: number, maxLength: number): { pvOffset: number; length: number } {
    const areaStart = (area: number) => this.peStartBytes + segment.areas[area]!.extent * this.extentBytes;
    if (segment.stripeCount === 1) return { pvOffset: areaStart(0) + at, length: maxLength };
    const stripeBytes = segment.stripeSize * SECTOR;
    const chunk = Math.floor(at / stripeBytes);
    const within = at % stripeBytes;
    const row = Math.floor(chunk / segment.stripeCount);
    return { pvOffset: areaStart(chunk % segment.stripeCount) + row * stripeBytes + within, length: Math.min(maxLength, stripeBytes - within) };
  }

  /** The LV as a volume of its own, read through the PV. */
  reader(pv: VolumeReader): VolumeReader {
    return {
      size: this.size,
      read: async (into, offset, length) => {
        if (offset < 0 || offset + length > this.size) fail(`a read at ${offset} (+${length}) goes past the end of LV ${this.lv.name} (${this.size} bytes)`);
        for (const piece of this.pieces(offset, length)) await pv.read(into.subarray(piece.lvOffset - offset), piece.pvOffset, piece.length);
      },
    };
  }

  /** LV byte ranges as PV byte ranges. */
  toPv(extents: readonly Extent[]): Extent[] {
    const out: Extent[] = [];
    for (const extent of extents) for (const piece of this.pieces(extent.offset, extent.length)) out.push({ offset: piece.pvOffset, length: piece.length });
    return out;
  }
}

/**
 * The newest metadata among the copies whose checksums verify: a copy damaged on disk is
 * outweighed by a good one, as LVM does. A verified copy that does not parse (or that this
 * reader does not understand) is not skipped: an older copy could describe fewer extents.
 */
export async function readNewestVolumeGroup(volume: VolumeReader, label: PvLabel): Promise<LvmVolumeGroup> {
  let newest: LvmVolumeGroup | undefined;
  let newestText = '';
  const damaged: string[] = [];
  for (const area of label.metadataAreas) {
    let copy: Awaited<ReturnType<typeof readMetadataCopy>>;
    try {
      copy = await readMetadataCopy(volume, area);
    } catch (err) {
      if (!(err instanceof InconsistentMetadataError)) throw err;
      damaged.push(err.message);
      continue;
    }
    if (!copy) continue;
    const vg = parseVolumeGroup(copy.text);
    if (newest && newest.uuid !== vg.uuid) fail(`the metadata areas describe two volume groups (${newest.name} and ${vg.name})`);
    if (newest && vg.seqno === newest.seqno && copy.text !== newestText) fail(`two metadata copies have seqno ${vg.seqno} but differ`);
    if (!newest || vg.seqno > newest.seqno) {
      newest = vg;
      newestText = copy.text;
    }
  }
  if (!newest) fail(damaged.length > 0 ? damaged.join('; ') : 'the PV holds no committed metadata (an orphan PV or ignored metadata areas)');
  return newest;
}

/** This PV in the VG's metadata, checked against its label and the volume it is on. */
function findThisPv(vg: LvmVolumeGroup, label: PvLabel, volumeSize: number): LvmPhysicalVolume {
  const pv = [...vg.pvs.values()].find((p) => p.uuid === label.uuid);
  if (!pv) fail(`the metadata of volume group ${vg.name} does not list this PV (uuid ${label.uuid})`);
  const peStart = pv.peStart * SECTOR;
  if (peStart !== label.dataAreas[0]!.offset) fail(`pe_start (${peStart} bytes) differs from the data area in the PV header (${label.dataAreas[0]!.offset})`);
  const end = peStart + pv.peCount * vg.extentSize * SECTOR;
  if (!Number.isSafeInteger(end) || end > volumeSize) fail(`${pv.peCount} extents of ${vg.extentSize} sectors from ${peStart} go past the end of the volume (${volumeSize} bytes)`);
  return pv;
}

/** Every LV's areas on this PV lie inside it and overlap no other; stripes fit the extents. */
function checkAllocations(vg: LvmVolumeGroup, pv: LvmPhysicalVolume): void {
  const areas: Array<{ start: number; end: number; lv: string }> = [];
  for (const lv of vg.lvs) {
    for (const segment of lv.segments) {
      if (segment.stripeCount > 1 && (vg.extentSize % segment.stripeSize !== 0 || segment.stripeSize > vg.extentSize)) {
        fail(`LV ${lv.name}: a stripe size of ${segment.stripeSize} sectors does not divide the extent size (${vg.extentSize})`);
      }
      const length = segment.extentCount / Math.max(segment.stripeCount, 1);
      for (const area of segment.areas.filter((a) => a.pv === pv.name)) {
        if (area.extent + length > pv.peCount) fail(`LV ${lv.name} uses extents ${area.extent}..${area.extent + length - 1} of ${pv.name}, which has ${pv.peCount}`);
        areas.push({ start: area.extent, end: area.extent + length, lv: lv.name });
      }
    }
  }
  areas.sort((a, b) => a.start - b.start);
  for (let i = 1; i < areas.length; i++) {
    if (areas[i]!.start < areas[i - 1]!.end) fail(`extent ${areas[i]!.start} of ${pv.name} belongs to both ${areas[i - 1]!.lv} and ${areas[i]!.lv}`);
  }
}

/** Why an LV's extents on this PV cannot be mapped by its filesystem, or undefined when they can. */
function exactReason(lv: LvmLogicalVolume, pv: LvmPhysicalVolume, usedBy: ReadonlyMap<string, string>): string | undefined {
  const other = lv.segments.find((s) => s.type !== 'striped');
  if (other) return `an LV of segment type ${other.type}`;
  const parent = usedBy.get(lv.name);
  if (parent !== undefined) return `part of ${parent}`;
  if (!lv.status.includes('VISIBLE')) return 'a hidden LV (part of another LV)';
  if (lv.status.includes('LOCKED') || lv.status.includes('PVMOVE')) return 'an LV being moved (pvmove)';
  const elsewhere = new Set(lv.segments.flatMap((s) => s.areas.map((a) => a.pv)).filter((name) => name !== pv.name));
  if (elsewhere.size > 0) return `spans other PVs (${[...elsewhere].join(', ')})`;
  return undefined;
}

/**
 * LVs other LVs are built on, with the user's description: an origin with snapshots is among
 * them because a snapshot still reads the origin's blocks it did not copy, blocks the origin's
 * filesystem may since have freed.
 */
function usedByOthers(vg: LvmVolumeGroup): Map<string, string> {
  const usedBy = new Map<string, string>();
  for (const lv of vg.lvs) {
    for (const segment of lv.segments) for (const name of segment.references) usedBy.set(name, `LV ${lv.name} (${segment.type})`);
  }
  return usedBy;
}

function areasOn(lv: LvmLogicalVolume, pv: LvmPhysicalVolume, extentBytes: number, peStartBytes: number): Extent[] {
  return lv.segments.flatMap((segment) =>
    segment.areas.filter((a) => a.pv === pv.name).map((a) => ({ offset: peStartBytes + a.extent * extentBytes, length: (segment.extentCount / segment.stripeCount) * extentBytes })),
  );
}

interface MappedLv {
  layout: LvmLogicalVolumeLayout;
  extents: Extent[];
}

/** One LV: its filesystem's used blocks through the LV's own map, or its extents here exactly. */
async function mapLogicalVolume(volume: VolumeReader, vg: LvmVolumeGroup, pv: LvmPhysicalVolume, lv: LvmLogicalVolume, usedBy: ReadonlyMap<string, string>, mappers: UsedBlockMappers): Promise<MappedLv> {
  const extentBytes = vg.extentSize * SECTOR;
  const peStartBytes = pv.peStart * SECTOR;
  const base = { name: lv.name, uuid: lv.uuid, size: lv.extentCount * extentBytes, segments: lv.segments.map(segmentLayout) };
  const here = areasOn(lv, pv, extentBytes, peStartBytes);
  const exact = (note: string, filesystem?: string): MappedLv => ({
    layout: { ...base, ...(filesystem !== undefined && { filesystem }), mode: 'exact', usedBytes: bytes(here), note: `${note}; imaged exactly` },
    extents: here,
  });
  if (here.length === 0) return { layout: { ...base, ...withoutExtentsHere(lv) }, extents: [] };
  const reason = exactReason(lv, pv, usedBy);
  if (reason !== undefined) return exact(reason);

  const map = new LogicalVolumeMap(lv, extentBytes, peStartBytes);
  const reader = map.reader(volume);
  const probe = probeVolume(await readHead(reader), SECTOR);
  if (probe.partitionTable.type !== 'none') return exact(`holds a ${probe.partitionTable.type} partition table`);
  if (probe.filesystem === 'lvm2') return exact('holds another LVM physical volume', 'lvm2');
  const plan = await planExtents('used', probe.filesystem, reader, mappers);
  if (plan.mode === 'exact') return exact((plan.note ?? 'imaged exactly').replace(/; imaged exactly$/, ''), probe.filesystem);
  const extents = map.toPv(plan.extents);
  return {
    layout: { ...base, ...(probe.filesystem !== undefined && { filesystem: probe.filesystem }), mode: 'used', usedBytes: bytes(plan.extents) },
    extents,
  };
}

/** An LV with nothing on this PV: on other PVs, or virtual (thin, snapshot), stored with the LVs it is built on. */
function withoutExtentsHere(lv: LvmLogicalVolume): Pick<LvmLogicalVolumeLayout, 'mode' | 'usedBytes' | 'note'> {
  const built = lv.segments.find((s) => s.type !== 'striped');
  if (!built) return { mode: 'used', usedBytes: 0, note: 'no extents on this PV' };
  const on = [...new Set(lv.segments.flatMap((s) => s.references))];
  return { mode: 'exact', note: `a ${built.type} LV${on.length > 0 ? ` on ${on.join(', ')}` : ''}: stored within the extents of the LVs it is built on, imaged exactly` };
}

function segmentLayout(segment: LvmSegment): LvmLogicalVolumeLayout['segments'][number] {
  return {
    startExtent: segment.startExtent,
    extentCount: segment.extentCount,
    type: segment.type,
    ...(segment.stripeCount > 1 && { stripeSize: segment.stripeSize * SECTOR }),
    areas: segment.areas.map((a) => ({ ...a })),
  };
}

function bytes(extents: readonly Extent[]): number {
  return extents.reduce((n, e) => n + e.length, 0);
}

/**
 * The LVM2 mapper. It maps the filesystems inside LVs with `mappers()`, the same table it is
 * registered in: a function, so the table can hold this mapper without an import cycle.
 */
export function createLvmMapper(mappers: () => UsedBlockMappers): UsedBlockMapper {
  return async (volume: VolumeReader): Promise<UsedBlockMap> => {
    const label = await readPvLabel(volume);
    const vg = await readNewestVolumeGroup(volume, label);
    const pv = findThisPv(vg, label, volume.size);
    checkAllocations(vg, pv);
    const usedBy = usedByOthers(vg);
    const extentBytes = vg.extentSize * SECTOR;
    const peStart = pv.peStart * SECTOR;
    const peEnd = peStart + pv.peCount * extentBytes;
    const extents: Extent[] = [{ offset: 0, length: peStart }, { offset: peEnd, length: volume.size - peEnd }, ...[...label.metadataAreas, ...label.bootloaderAreas].map((a) => ({ offset: a.offset, length: a.size }))];
    const logicalVolumes: LvmLogicalVolumeLayout[] = [];
    for (const lv of vg.lvs) {
      const mapped = await mapLogicalVolume(volume, vg, pv, lv, usedBy, mappers());
      extents.push(...mapped.extents);
      logicalVolumes.push(mapped.layout);
    }
    const lvm: LvmLayout = {
      vg: { name: vg.name, uuid: vg.uuid, seqno: vg.seqno, extentSize: extentBytes },
      pv: { name: pv.name, uuid: label.uuid, peStart, peCount: pv.peCount },
      logicalVolumes,
    };
    return { extents: mergeExtents(extents), lvm };
  };
}
