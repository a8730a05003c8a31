import { SEAL_OVERHEAD, open } from '../crypto/crypto.js';
import { DamageError } from '../errors.js';
import { Keys, decodePackHeader, packHeaderLength, type PackedBlob } from './format.js';
import type { Repository, StoredPack } from './repository.js';

/** Bytes read from a pack's end at first: enough for the header of a pack of a few hundred blobs. */
const TAIL_GUESS = 16 * 1024;

/** Smallest possible pack: an empty sealed header and its length. */
const MIN_PACK = packHeaderLength(0) + SEAL_OVERHEAD + 4;

/**
 * Reads and opens a pack's header with ranged reads of its tail (usually one), never the
 * whole pack: `sealed header ‖ u32 length` end every pack (docs/FORMAT.md, Packs). A header
 * that is cut off, fails authentication or does not describe the pack's bytes is a DamageError
 * naming the pack.
 */
export async function readPackHeader(repository: Repository, pack: StoredPack): Promise<PackedBlob[]> {
  const key = Keys.pack(pack.id);
  if (pack.size < MIN_PACK) throw new DamageError(`pack ${key} is damaged: ${pack.size} bytes are too few for a pack`);
  const guess = Math.min(pack.size, TAIL_GUESS);
  let tail = await repository.readPack(pack.id, { offset: pack.size - guess, length: guess });
  const headerLength = tail.readUInt32LE(tail.length - 4);
  if (headerLength + 4 > tail.length && headerLength + 4 <= pack.size) {
    tail = await repository.readPack(pack.id, { offset: pack.size - 4 - headerLength, length: headerLength + 4 });
  }
  const header = packHeaderOf(repository, tail, pack.size);
  if (typeof header === 'string') throw new DamageError(`pack ${key} is damaged: ${header}`);
  return header;
}

/**
 * The blobs a pack's header lists, from the pack's last bytes (`tail`, at least the sealed
 * header and its length) and its size; or, as a string, what is wrong with the header.
 */
export function packHeaderOf(repository: Repository, tail: Uint8Array, packSize: number): PackedBlob[] | string {
  if (packSize < MIN_PACK || tail.length < 4) return `${packSize} bytes are too few for a pack`;
  const headerLength = Buffer.from(tail.buffer, tail.byteOffset, tail.byteLength).readUInt32LE(tail.length - 4);
  if (headerLength + 4 > packSize || headerLength < MIN_PACK - 4) {
    return `its header length ${headerLength} does not fit its ${packSize} bytes (truncated, or its end was changed)`;
  }
  let plain: Buffer;
  try {
    plain = open(repository.masterKey.encryption, tail.subarray(tail.length - 4 - headerLength, tail.length - 4));
  } catch {
    return 'its header fails authentication';
  }
  let blobs: PackedBlob[];
  try {
    blobs = decodePackHeader(plain);
  } catch (err) {
    return `its header is invalid (${(err as Error).message})`;
  }
  const dataEnd = packSize - 4 - headerLength;
  const listed = blobs.reduce((n, blob) => n + blob.length, 0);
  if (listed !== dataEnd) return `its header lists ${listed} bytes of blobs, the pack holds ${dataEnd}`;
  return blobs;
}
