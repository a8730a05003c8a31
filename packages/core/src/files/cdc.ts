import { blobIdOf } from '../crypto/crypto.js';
import { blobIdSchemeOf, type RepositoryConfig } from '../repository/config.js';
import type { MasterKey } from '../crypto/crypto.js';
import type { ChunkerParameters } from '../repository/snapshot.js';
import { loadPosix, type Posix } from './posix.js';

/*
 * FastCDC (Xia et al., 2016) with normalized chunking, level 2, as docs/FORMAT.md describes:
 *
 * - gear[i] (i = 0..255) is the first 4 bytes, little-endian, of the repository's blob id
 *   function applied to the 18 ASCII bytes `cairn-fastcdc-gear` followed by the byte i. The
 *   table is secret with the blob-id key, so chunk boundaries reveal nothing about the content
 *   without the password.
 * - The hash is 32 bits: h = ((h << 1) + gear[byte]) mod 2^32, starting from 0 at the chunk's
 *   `min`-th byte (bytes before it cannot end a chunk, and h depends only on the last 32
 *   bytes fed in, so skipping them changes no boundary).
 * - After feeding the byte at chunk position p (0-based, p >= min), the chunk ends after that
 *   byte (length p + 1) when (h & mask) === 0, where mask is maskS (the log2(avg) + 2 highest
 *   bits) while p + 1 < avg, and maskL (the log2(avg) - 2 highest bits) from then on. The high
 *   bits are used because the low bits depend on only the last few bytes.
 * - A chunk that reaches `max` bytes ends there; the data's last chunk ends with the data.
 */

const GEAR_LABEL = Buffer.from('cairn-fastcdc-gear', 'ascii');

/** The repository's secret gear table (see above). */
export function gearTable(config: RepositoryConfig, masterKey: MasterKey): Uint32Array {
  const scheme = blobIdSchemeOf(config);
  const gear = new Uint32Array(256);
  const input = Buffer.alloc(GEAR_LABEL.length + 1);
  GEAR_LABEL.copy(input);
  for (let i = 0; i < 256; i++) {
    input[GEAR_LABEL.length] = i;
    gear[i] = blobIdOf(scheme, masterKey.blobId, input).readUInt32LE(0);
  }
  return gear;
}

/** The native gear loop, once useNativeChunker has loaded it in this thread. */
let nativeGearCut: Posix['gearCut'] | undefined;

/**
 * From now on, in this thread, FastCdc runs its byte loop in @cairn/posix (2-3 times as fast
 * as the loop below, which a first files backup spent 7 % of its CPU time in). The same
 * boundaries either way; without the addon the JavaScript loop stays in use.
 */
export async function useNativeChunker(): Promise<void> {
  nativeGearCut ??= await loadPosix().then(
    (posix) => posix.gearCut,
    () => undefined,
  );
}

/** Which byte loop FastCdc uses in this thread. */
export function chunkerInUse(): 'native' | 'javascript' {
  return nativeGearCut ? 'native' : 'javascript';
}

/** A mask of the `bits` highest bits of a 32-bit word, as the signed 32-bit integer `&` works with. */
function highBits(bits: number): number {
  return bits <= 0 ? 0 : bits >= 32 ? -1 : (-1 << (32 - bits)) | 0;
}

/** Cuts data into content-defined chunks with one repository's gear table and sizes. */
export class FastCdc {
  readonly #gear: Int32Array;
  readonly #maskS: number;
  readonly #maskL: number;

  constructor(
    gear: Uint32Array,
    readonly parameters: ChunkerParameters,
  ) {
    // The same bits, read as signed: the loop then stays in 32-bit integer arithmetic.
    this.#gear = new Int32Array(gear.buffer, gear.byteOffset, 256);
    const bits = Math.round(Math.log2(parameters.avg));
    this.#maskS = highBits(bits + 2);
    this.#maskL = highBits(bits - 2);
  }

  /**
   * The length of the chunk that starts at `data[start]`, with `data[start…end)` available.
   * `final` says the data ends at `end`; otherwise `end - start` must be at least `max`
   * (or the answer might change with more data).
   */
  cut(data: Uint8Array, start: number, end: number, final: boolean): number {
    const { min, max } = this.parameters;
    const available = end - start;
    if (available <= min) return available;
    if (!final && available < max) throw new Error(`FastCdc.cut needs ${max} bytes or the end of the data, got ${available}`);
    return this.boundary(data, start, end, final)!;
  }

  /**
   * As `cut`, for any amount of data: the length of the chunk that starts at `data[start]` when
   * `data[start…end)` decides it (a boundary in it, `max` bytes, or the end of the data when
   * `final`), undefined when it takes more data. A boundary found depends only on the bytes up to
   * it, so cutting as data arrives gives the same chunks as cutting it whole.
   *
   * `scanned` is where an earlier call for the same chunk stopped (its `end`, when it answered
   * undefined): no byte before it ends the chunk, so only the 32 bytes before it are fed again
   * (h depends on no others) and the search goes on from there instead of from `min`.
   */
  boundary(data: Uint8Array, start: number, end: number, final: boolean, scanned = start): number | undefined {
    const { min, avg, max } = this.parameters;
    const available = end - start;
    if (available <= min) return final ? available : undefined;
    const limit = start + Math.min(available, max);
    const from = Math.max(start + min, Math.min(scanned, limit));
    const warm = Math.max(start + min, from - 32);
    const normal = Math.max(from, Math.min(start + avg - 1, limit));
    const cut = nativeGearCut ? nativeGearCut(this.#gear, data, warm, from, normal, limit, this.#maskS, this.#maskL) : this.#scan(data, warm, from, normal, limit);
    if (cut >= 0) return cut - start;
    return final || available >= max ? limit - start : undefined;
  }

  /** What @cairn/posix's gearCut does: feeds `[warm, from)`, then tests with maskS up to `normal` and maskL up to `limit`; the position past the cut, or -1. */
  #scan(data: Uint8Array, warm: number, from: number, normal: number, limit: number): number {
    const gear = this.#gear;
    let h = 0;
    let i = warm;
    for (; i < from; i++) h = ((h << 1) + gear[data[i]!]!) | 0;
    for (const mask = this.#maskS; i < normal; i++) {
      h = ((h << 1) + gear[data[i]!]!) | 0;
      if ((h & mask) === 0) return i + 1;
    }
    for (const mask = this.#maskL; i < limit; i++) {
      h = ((h << 1) + gear[data[i]!]!) | 0;
      if ((h & mask) === 0) return i + 1;
    }
    return -1;
  }

  /** Every chunk length of a whole buffer, in order (tests and benchmarks). */
  lengths(data: Uint8Array): number[] {
    const lengths: number[] = [];
    for (let at = 0; at < data.length; ) {
      const length = this.cut(data, at, data.length, true);
      lengths.push(length);
      at += length;
    }
    return lengths;
  }
}
