// Helpers shared by the LVM2 mapper's tests (excluded from the build, like the tests): they
// rewrite a real PV's metadata in memory, with checksums made right, as LVM itself would.
import { lvmCrc } from '../lvm-label.js';

export const MDA_HEADER_SIZE = 512;

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export interface Area {
  offset: number;
  size: number;
}

/** The metadata areas the PV header lists (label in sector 1, as pvcreate writes it). */
export function metadataAreas(pv: Uint8Array): Area[] {
  const data = view(pv);
  const header = 512 + data.getUint32(512 + 20, true);
  let at = header + 40;
  while (data.getBigUint64(at, true) !== 0n) at += 16; // data areas
  at += 16;
  const areas: Area[] = [];
  for (; data.getBigUint64(at, true) !== 0n; at += 16) areas.push({ offset: Number(data.getBigUint64(at, true)), size: Number(data.getBigUint64(at + 8, true)) });
  return areas;
}

/** The committed text of a metadata area (no wrapping: what a fresh PV holds). */
export function metadataText(pv: Uint8Array, area: Area): { offset: number; text: string } {
  const data = view(pv);
  const offset = Number(data.getBigUint64(area.offset + 40, true));
  const size = Number(data.getBigUint64(area.offset + 48, true));
  const first = Math.min(size, area.size - offset);
  const bytes = Buffer.concat([pv.subarray(area.offset + offset, area.offset + offset + first), pv.subarray(area.offset + MDA_HEADER_SIZE, area.offset + MDA_HEADER_SIZE + size - first)]);
  return { offset, text: bytes.toString('latin1') };
}

/** Recomputes the mda_header checksum after an edit of its fields. */
export function fixMdaHeader(pv: Uint8Array, area: Area): void {
  view(pv).setUint32(area.offset, lvmCrc(pv.subarray(area.offset + 4, area.offset + MDA_HEADER_SIZE)), true);
}

/** Recomputes the label checksum (label in `sector`). */
export function fixLabel(pv: Uint8Array, sector = 1): void {
  view(pv).setUint32(sector * 512 + 16, lvmCrc(pv.subarray(sector * 512 + 20, sector * 512 + 512)), true);
}

/**
 * Writes `text` as the committed metadata of `area`, at `offset` in the area (wrapping past
 * its end to just after the header, as LVM's ring buffer does), with raw_locn and checksums set.
 */
export function writeMetadataText(pv: Uint8Array, area: Area, text: string, offset = MDA_HEADER_SIZE): void {
  const bytes = Buffer.from(text, 'latin1');
  const first = Math.min(bytes.length, area.size - offset);
  pv.set(bytes.subarray(0, first), area.offset + offset);
  pv.set(bytes.subarray(first), area.offset + MDA_HEADER_SIZE);
  const data = view(pv);
  data.setBigUint64(area.offset + 40, BigInt(offset), true);
  data.setBigUint64(area.offset + 48, BigInt(bytes.length), true);
  data.setUint32(area.offset + 56, lvmCrc(bytes), true);
  fixMdaHeader(pv, area);
}

/** The metadata text with `seqno` set. */
export function withSeqno(text: string, seqno: number): string {
  return text.replace(/seqno = \d+/, `seqno = ${seqno}`);
}

/** Adds LV sections (LVM text) inside the VG's `logical_volumes` section. */
export function withLvSections(text: string, sections: string): string {
  const at = text.indexOf('logical_volumes {');
  if (at < 0) throw new Error('the metadata has no logical_volumes section');
  const open = at + 'logical_volumes {'.length;
  return text.slice(0, open) + '\n' + sections + text.slice(open);
}
