import { createHash } from 'node:crypto';
import type { UsedBlockMapper, VolumeReader } from '../extents.js';
import { InconsistentMetadataError } from './inconsistent.js';

/**
 * A LUKS volume is imaged exactly: without the key its payload is indistinguishable from
 * random data, so no block can be called unused. The mapper reads the header only to say so
 * precisely (version, UUID, cipher), which `cairn show` prints as the volume's note; a header
 * that does not parse is named as such. Layouts: cryptsetup's LUKS1 on-disk format (big-endian
 * binary header) and LUKS2 (binary header, then a JSON area whose `segments` give the cipher).
 */

const MAGIC = 'LUKS\xba\xbe';
const SECTOR = 512;
const LUKS2_BINARY_HEADER = 4096;
/** LUKS2 header sizes (binary header + JSON area): 16 KiB to 4 MiB, powers of two. */
const LUKS2_HEADER_SIZES = new Set(Array.from({ length: 9 }, (_, i) => 16384 * 2 ** i));
const LUKS2_CHECKSUM = 448;

function fail(message: string): never {
  throw new InconsistentMetadataError(`LUKS: ${message}`);
}

export interface LuksHeader {
  version: 1 | 2;
  uuid: string;
  cipher: string;
  /** Where the encrypted payload starts, in bytes. */
  payloadOffset: number;
}

/** A NUL-terminated ASCII field. */
function text(bytes: Uint8Array, start: number, length: number): string {
  const field = bytes.subarray(start, start + length);
  const end = field.indexOf(0);
  return Buffer.from(field.subarray(0, end === -1 ? field.length : end)).toString('latin1');
}

export function parseLuks1Header(header: Uint8Array, volumeSize: number): LuksHeader {
  const data = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const cipher = `${text(header, 8, 32)}-${text(header, 40, 32)}`;
  const keyBytes = data.getUint32(108, false);
  const payloadOffset = data.getUint32(104, false) * SECTOR;
  const uuid = text(header, 168, 40);
  if (!/^[a-z0-9]+-[a-z0-9:-]+$/i.test(cipher)) fail(`LUKS1 header names an unreadable cipher ${JSON.stringify(cipher)}`);
  if (![16, 24, 32, 48, 64].includes(keyBytes)) fail(`LUKS1 header gives a ${keyBytes}-byte key`);
  if (payloadOffset < 4096 || payloadOffset > volumeSize) fail(`LUKS1 header puts the payload at byte ${payloadOffset}, outside the volume (${volumeSize} bytes)`);
  return { version: 1, uuid, cipher, payloadOffset };
}

/** The cipher and offset of the first crypt segment of a LUKS2 JSON area. */
function luks2Segment(json: string): { cipher: string; offset: number } {
  let metadata: { segments?: Record<string, { type?: unknown; encryption?: unknown; offset?: unknown }> };
  try {
    metadata = JSON.parse(json) as typeof metadata;
  } catch (err) {
    fail(`LUKS2 JSON area does not parse (${(err as Error).message})`);
  }
  const segments = Object.entries(metadata.segments ?? {}).sort(([a], [b]) => Number(a) - Number(b));
  const crypt = segments.find(([, segment]) => segment.type === 'crypt');
  if (!crypt || typeof crypt[1].encryption !== 'string' || typeof crypt[1].offset !== 'string' || !/^\d+$/.test(crypt[1].offset)) fail('LUKS2 JSON area has no crypt segment with a cipher and an offset');
  return { cipher: crypt[1].encryption, offset: Number(crypt[1].offset) };
}

export async function readLuks2Header(volume: VolumeReader, binary: Uint8Array): Promise<LuksHeader> {
  const data = new DataView(binary.buffer, binary.byteOffset, binary.byteLength);
  const headerSize = Number(data.getBigUint64(8, false));
  if (!LUKS2_HEADER_SIZES.has(headerSize) || headerSize > volume.size) fail(`LUKS2 header size ${headerSize} is not valid for a ${volume.size}-byte volume`);
  if (data.getBigUint64(256, false) !== 0n) fail('the primary LUKS2 header does not say it is at offset 0');
  const header = new Uint8Array(headerSize);
  await volume.read(header, 0, headerSize);
  if (text(header, 72, 32) === 'sha256') {
    const stored = Buffer.from(header.subarray(LUKS2_CHECKSUM, LUKS2_CHECKSUM + 32));
    header.fill(0, LUKS2_CHECKSUM, LUKS2_CHECKSUM + 64);
    if (!createHash('sha256').update(header).digest().equals(stored)) fail('the primary LUKS2 header fails its sha256 checksum');
  }
  const segment = luks2Segment(text(header, LUKS2_BINARY_HEADER, headerSize - LUKS2_BINARY_HEADER));
  if (segment.offset < 2 * headerSize || segment.offset > volume.size) fail(`LUKS2 payload offset ${segment.offset} is outside the volume (${volume.size} bytes)`);
  return { version: 2, uuid: text(header, 168, 40), cipher: segment.cipher, payloadOffset: segment.offset };
}

export async function readLuksHeader(volume: VolumeReader): Promise<LuksHeader> {
  if (volume.size < LUKS2_BINARY_HEADER) fail(`the volume (${volume.size} bytes) is smaller than a LUKS header`);
  const binary = new Uint8Array(LUKS2_BINARY_HEADER);
  await volume.read(binary, 0, binary.length);
  if (Buffer.from(binary.subarray(0, 6)).toString('latin1') !== MAGIC) fail('no LUKS magic');
  const version = new DataView(binary.buffer).getUint16(6, false);
  if (version === 1) return parseLuks1Header(binary, volume.size);
  if (version === 2) return readLuks2Header(volume, binary);
  return fail(`LUKS version ${version} is not known`);
}

/**
 * Never returns a map: the reason it gives is what `show` prints for the volume, which is
 * then imaged exactly, header, key slots and payload.
 */
export const mapLuksUsedBlocks: UsedBlockMapper = async (volume) => {
  const header = await readLuksHeader(volume);
  throw new InconsistentMetadataError(
    `LUKS${header.version} encrypted volume (UUID ${header.uuid}, ${header.cipher}): the payload is opaque without the key`,
  );
};
