import type { VolumeLayout } from '../types';

/** One box of the drawn disk: a partition, the whole volume, or unallocated space. */
export interface Segment {
  key: string;
  label: string;
  filesystem?: string;
  offset: number;
  size: number;
  /** Bytes in use; undefined when the whole segment was imaged (exact mode) or nothing is known. */
  used?: number;
  mode?: 'exact' | 'used';
  note?: string;
  free?: boolean;
}

/** The disk from start to end: partitions in order, with the space between them as unallocated. */
export function segments(layout: VolumeLayout, bytesRead?: number): Segment[] {
  if (layout.partitions.length === 0) {
    const used = layout.mode === 'used' ? bytesRead : undefined;
    return [{ key: 'whole', label: 'whole volume', filesystem: layout.filesystem, offset: 0, size: layout.size, used, mode: layout.mode, note: layout.note }];
  }
  const result: Segment[] = [];
  let at = 0;
  for (const p of [...layout.partitions].sort((a, b) => a.offset - b.offset)) {
    if (p.offset - at >= layout.size / 200) result.push({ key: `gap-${at}`, label: 'unallocated', offset: at, size: p.offset - at, free: true });
    result.push({ key: `p${p.index}`, label: `#${p.index}${p.name ? ` ${p.name}` : ''}`, filesystem: p.filesystem, offset: p.offset, size: p.size, used: p.usedBytes, mode: p.mode, note: p.note });
    at = Math.max(at, p.offset + p.size);
  }
  if (layout.size - at >= layout.size / 200) result.push({ key: `gap-${at}`, label: 'unallocated', offset: at, size: layout.size - at, free: true });
  return result;
}

export function usedFraction(segment: Segment): number {
  if (segment.free) return 0;
  if (segment.mode === 'exact' || segment.used === undefined) return 1;
  return Math.min(1, segment.used / segment.size);
}
