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

/** mulberry32: a tiny deterministic PRNG (32 bits of state), plenty to spread damage in the fuzz tests; not for cryptography. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A whole number from 0 to `max` in the environment variable `name` (a fuzz seed or round count), else `fallback`. */
export function envInteger(name: string, fallback: number, max = 0xffffffff): number {
  const value = process.env[name];
  if (value === undefined || value === '') return fallback;
  const number = Number(value);
  if (!Number.isInteger(number) || number < 0 || number > max) throw new Error(`${name} must be an integer from 0 to ${max}, not "${value}"`);
  return number;
}
