import type { ExportExtent } from './export-source.js';

/** Refuses a range outside the export: the protocol server answers such a request itself, so this is a bug. */
export function checkRange(exported: { readonly name: string; readonly size: number }, offset: number, length: number): void {
  const valid = Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= exported.size;
  if (!valid) throw new RangeError(`${length} bytes at offset ${offset} are outside export '${exported.name}' of ${exported.size} bytes`);
}

/** Joins neighbours with the same state, in place of the many runs a chunk or block walk yields. */
export function mergeExtents(extents: readonly ExportExtent[]): ExportExtent[] {
  const merged: ExportExtent[] = [];
  for (const extent of extents) {
    if (extent.length === 0) continue;
    const last = merged.at(-1);
    if (last && last.hole === extent.hole && last.zero === extent.zero && last.offset + last.length === extent.offset) last.length += extent.length;
    else merged.push({ ...extent });
  }
  return merged;
}
