// Helpers shared by the used-block map tests (excluded from the build, like the tests).
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { expect } from 'vitest';
import type { Extent } from '@cairn/core';
import type { VolumeReader } from '../extents.js';

const MiB = 1024 * 1024;

/** Writes an image file full of stale, non-zero bytes, as a reused disk holds; quick formats leave them in free space. */
export async function writeStaleImage(image: string, size: number): Promise<void> {
  const pattern = randomBytes(MiB);
  pattern.forEach((byte, i) => (pattern[i] = byte | 1));
  const handle = await open(image, 'w');
  try {
    for (let at = 0; at < size; at += MiB) await handle.write(pattern, 0, Math.min(MiB, size - at), at);
  } finally {
    await handle.close();
  }
}

/** A volume held in memory; reading past its end is an error, as on a real device. */
export function bytesReader(bytes: Uint8Array): VolumeReader {
  return {
    size: bytes.length,
    async read(into, offset, length) {
      if (offset + length > bytes.length) throw new RangeError(`read past the end (${offset} + ${length})`);
      into.set(bytes.subarray(offset, offset + length));
    },
  };
}

/** Extents are sorted, not empty, neither overlapping nor touching, and inside the volume. */
export function expectWellFormed(extents: readonly Extent[], size: number, message?: string): void {
  let end = 0;
  for (const extent of extents) {
    expect(extent.length, message).toBeGreaterThan(0);
    expect(extent.offset, message).toBeGreaterThan(end === 0 ? -1 : end); // sorted, not touching
    end = extent.offset + extent.length;
  }
  expect(end, message).toBeLessThanOrEqual(size);
}
