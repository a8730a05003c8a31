import { InconsistentMetadataError } from './inconsistent.js';
import { parseLvmText, SectionReader, type LvmScalar } from './lvm-text.js';

/**
 * A volume group as its text metadata describes it (LVM2 lib/format_text/import_vsn1.c):
 * extent size, physical volumes, logical volumes and their segments. Sizes stay in the units
 * the metadata uses (512-byte sectors, extents); only what mapping needs is kept, and checked.
 */

export interface LvmPhysicalVolume {
  name: string;
  /** Without dashes, as the PV header stores it. */
  uuid: string;
  peStart: number;
  peCount: number;
}

export interface LvmSegment {
  startExtent: number;
  extentCount: number;
  type: string;
  /** Striped segments only: stripes and their size in sectors (stripeSize 0 for one stripe). */
  stripeCount: number;
  stripeSize: number;
  /** Striped segments only: where each stripe starts. */
  areas: Array<{ pv: string; extent: number }>;
  /** Other segment types: the names they refer to (sub-LVs, pools, origins). */
  references: string[];
}

export interface LvmLogicalVolume {
  name: string;
  uuid: string;
  status: string[];
  segments: LvmSegment[];
  extentCount: number;
}

export interface LvmVolumeGroup {
  name: string;
  uuid: string;
  seqno: number;
  /** Sectors. */
  extentSize: number;
  pvs: Map<string, LvmPhysicalVolume>;
  lvs: LvmLogicalVolume[];
}

function fail(message: string): never {
  throw new InconsistentMetadataError(`LVM metadata: ${message}`);
}

/** Keys of a segment that hold no names of LVs or PVs. */
const NON_REFERENCE_KEYS = new Set(['type', 'tags', 'start_extent', 'extent_count', 'flags', 'status', 'policy', 'cache_mode', 'discards', 'metadata_format', 'zero_new_blocks', 'vdo_pool_header_size', 'vdo_pool_virtual_extents']);

const VG_SECTIONS = new Set(['physical_volumes', 'logical_volumes', 'historical_logical_volumes']);

/** Parses one copy of the metadata text; the VG is its only top-level section. */
export function parseVolumeGroup(text: string): LvmVolumeGroup {
  const top = new SectionReader(parseLvmText(text), 'metadata');
  const sections = top.children();
  if (sections.length !== 1) fail(`the text holds ${sections.length} top-level sections, not one volume group`);
  if (top.has('version') && top.integer('version') !== 1) fail(`the text format version is ${top.integer('version')}, not 1`);
  const vg = sections[0]!;
  // A section LVM does not write here (a brace out of place can make an LV one) is not ignored.
  for (const name of vg.section.sections.keys()) if (!VG_SECTIONS.has(name)) fail(`the volume group holds an unknown section "${name}"`);
  const extentSize = vg.integer('extent_size', 1);
  const pvs = new Map<string, LvmPhysicalVolume>();
  for (const pv of vg.child('physical_volumes').children()) pvs.set(pv.name, parsePv(pv));
  const lvs = vg.section.sections.has('logical_volumes') ? vg.child('logical_volumes').children().map((lv) => parseLv(lv, pvs)) : [];
  return { name: vg.name, uuid: vg.string('id'), seqno: vg.integer('seqno'), extentSize, pvs, lvs };
}

function parsePv(pv: SectionReader): LvmPhysicalVolume {
  if (pv.section.sections.size > 0) fail(`${pv.where} holds sections, which a PV never has`);
  return { name: pv.name, uuid: pv.string('id').replaceAll('-', ''), peStart: pv.integer('pe_start'), peCount: pv.integer('pe_count') };
}

function parseLv(lv: SectionReader, pvs: ReadonlyMap<string, LvmPhysicalVolume>): LvmLogicalVolume {
  const count = lv.integer('segment_count', 1);
  if (lv.section.sections.size !== count) fail(`${lv.where}: segment_count is ${count} but ${lv.section.sections.size} sections follow`);
  const segments: LvmSegment[] = [];
  let next = 0;
  for (let i = 1; i <= count; i++) {
    const segment = parseSegment(lv.child(`segment${i}`), pvs);
    if (segment.startExtent !== next) fail(`${lv.where}/segment${i} starts at extent ${segment.startExtent}, not ${next}`);
    next += segment.extentCount;
    segments.push(segment);
  }
  if (!Number.isSafeInteger(next)) fail(`${lv.where}: the segments add up to too many extents`);
  return { name: lv.name, uuid: lv.string('id'), status: lv.flags('status'), segments, extentCount: next };
}

function parseSegment(segment: SectionReader, pvs: ReadonlyMap<string, LvmPhysicalVolume>): LvmSegment {
  const base = { startExtent: segment.integer('start_extent'), extentCount: segment.integer('extent_count', 1), type: segment.string('type') };
  if (base.type !== 'striped') return { ...base, stripeCount: 0, stripeSize: 0, areas: [], references: referencesOf(segment, pvs) };
  const stripeCount = segment.integer('stripe_count', 1);
  const stripeSize = stripeCount > 1 ? segment.integer('stripe_size', 1) : 0;
  if (base.extentCount % stripeCount !== 0) fail(`${segment.where}: ${base.extentCount} extents do not divide into ${stripeCount} stripes`);
  const stripes = segment.array('stripes');
  if (stripes.length !== 2 * stripeCount) fail(`${segment.where}: "stripes" has ${stripes.length} entries for ${stripeCount} stripes`);
  const areas: LvmSegment['areas'] = [];
  for (let i = 0; i < stripes.length; i += 2) {
    const pv = stripes[i];
    const extent = stripes[i + 1];
    if (typeof pv !== 'string' || !pvs.has(pv)) fail(`${segment.where}: stripe ${i / 2} names ${JSON.stringify(pv)}, not a PV of the volume group`);
    if (typeof extent !== 'number' || !Number.isSafeInteger(extent) || extent < 0) fail(`${segment.where}: stripe ${i / 2} starts at ${JSON.stringify(extent)}`);
    areas.push({ pv, extent });
  }
  return { ...base, stripeCount, stripeSize, areas, references: [] };
}

/**
 * Names a non-striped segment refers to. One naming a PV places data on it in a way this
 * reader does not lay out (a pvmove mirror, say): the whole PV must then be imaged exactly.
 */
function referencesOf(segment: SectionReader, pvs: ReadonlyMap<string, LvmPhysicalVolume>): string[] {
  const names: string[] = [];
  for (const [key, value] of segment.section.values) {
    if (NON_REFERENCE_KEYS.has(key)) continue;
    for (const item of ([] as LvmScalar[]).concat(value)) {
      if (typeof item !== 'string') continue;
      if (pvs.has(item)) fail(`${segment.where}: a "${segment.string('type')}" segment places data on ${item} directly`);
      names.push(item);
    }
  }
  return names;
}
