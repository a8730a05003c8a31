import type { Extent } from '@cairn/core';

/** Appends a byte range to extents built in order, joining it to the last one when they touch. */
export function appendExtent(extents: Extent[], offset: number, length: number): void {
  const last = extents.at(-1);
  if (last && offset <= last.offset + last.length) {
    last.length = Math.max(last.length, offset + length - last.offset);
  } else if (length > 0) {
    extents.push({ offset, length });
  }
}

/** Sorts extents and joins those that touch or overlap; empty ones are dropped. */
export function mergeExtents(extents: readonly Extent[]): Extent[] {
  const merged: Extent[] = [];
  for (const extent of [...extents].sort((a, b) => a.offset - b.offset)) appendExtent(merged, extent.offset, extent.length);
  return merged;
}
