import type { VolumeReader } from '../extents.js';
import { InconsistentMetadataError } from './inconsistent.js';

/**
 * The on-disk structures of an LVM2 physical volume (LVM2 lib/format_text/layout.h and
 * lib/label/label.h): the label in one of the first four sectors, the PV header after it
 * (uuid, device size, data and metadata area lists), and at the start of each metadata area
 * an mda_header whose raw_locn points at the committed metadata text, a ring buffer after the
 * header's 512 bytes. Every structure carries LVM's CRC, checked here.
 */

const SECTOR = 512;
const LABEL_SCAN_SECTORS = 4;
const MDA_HEADER_SIZE = 512;
const MDA_MAGIC = ' LVM2 x[5A%r0N*>';
const RAW_LOCN_IGNORED = 0x1;
/** The committed metadata text is at most this long: a bound against absurd sizes (LVM's own default area is 1 MiB). */
const MAX_TEXT = 64 * 1024 * 1024;

export interface DiskArea {
  offset: number;
  size: number;
}

export interface PvLabel {
  /** Sector of the label (0 to 3). */
  sector: number;
  /** The PV uuid, 32 characters without dashes. */
  uuid: string;
  deviceSize: number;
  dataAreas: DiskArea[];
  metadataAreas: DiskArea[];
  /** Areas set aside for a boot loader (pv_header_extension, pvcreate --bootloaderareasize). */
  bootloaderAreas: DiskArea[];
}

/** One copy of the metadata text, from one metadata area, with its checksum verified. */
export interface MetadataCopy {
  area: DiskArea;
  text: string;
}

function fail(message: string): never {
  throw new InconsistentMetadataError(`LVM: ${message}`);
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** LVM's calc_crc: the CRC-32 polynomial, started from 0xf597a6cf, with no final inversion. */
export function lvmCrc(bytes: Uint8Array, initial = 0xf597a6cf): number {
  let crc = initial;
  for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return crc >>> 0;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function ascii(bytes: Uint8Array, offset: number, length: number): string {
  return Buffer.from(bytes.subarray(offset, offset + length)).toString('latin1');
}

function uint64(data: DataView, offset: number, what: string): number {
  const value = data.getBigUint64(offset, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) fail(`the ${what} (${value}) is out of range`);
  return Number(value);
}

async function readAt(volume: VolumeReader, offset: number, length: number, what: string): Promise<Uint8Array> {
  if (offset < 0 || length < 0 || offset + length > volume.size) fail(`the ${what} (bytes ${offset}..${offset + length}) lies past the end of the volume (${volume.size} bytes)`);
  const bytes = new Uint8Array(length);
  await volume.read(bytes, offset, length);
  return bytes;
}

/** A zero-terminated list of disk_locn { offset, size } from `at`; returns the areas and where the list ends. */
function readAreaList(data: DataView, at: number, what: string): { areas: DiskArea[]; next: number } {
  const areas: DiskArea[] = [];
  for (;;) {
    if (at + 16 > data.byteLength) fail(`the ${what} list runs past the label sector`);
    const offset = uint64(data, at, `${what} offset`);
    const size = uint64(data, at + 8, `${what} size`);
    at += 16;
    if (offset === 0) return { areas, next: at };
    areas.push({ offset, size });
  }
}

/** Finds and checks the label and PV header. */
export async function readPvLabel(volume: VolumeReader): Promise<PvLabel> {
  const head = await readAt(volume, 0, Math.min(volume.size, LABEL_SCAN_SECTORS * SECTOR), 'label sectors');
  for (let sector = 0; sector < LABEL_SCAN_SECTORS; sector++) {
    const label = head.subarray(sector * SECTOR, (sector + 1) * SECTOR);
    if (label.length < SECTOR || ascii(label, 0, 8) !== 'LABELONE') continue;
    return parseLabel(label, sector, volume.size);
  }
  fail('no label ("LABELONE") in the first four sectors');
}

function parseLabel(label: Uint8Array, sector: number, volumeSize: number): PvLabel {
  const data = view(label);
  if (ascii(label, 24, 8) !== 'LVM2 001') fail(`the label's type is "${ascii(label, 24, 8)}", not "LVM2 001"`);
  if (uint64(data, 8, 'label sector') !== sector) fail(`the label in sector ${sector} says it is in sector ${data.getBigUint64(8, true)}`);
  const crc = lvmCrc(label.subarray(20));
  if (crc !== data.getUint32(16, true)) fail(`the label's checksum is wrong (0x${data.getUint32(16, true).toString(16)}, computed 0x${crc.toString(16)})`);
  const headerOffset = data.getUint32(20, true);
  if (headerOffset < 32 || headerOffset + 40 > SECTOR) fail(`the PV header offset ${headerOffset} is outside the label sector`);
  const uuid = ascii(label, headerOffset, 32);
  if (!/^[A-Za-z0-9!#]{32}$/.test(uuid)) fail('the PV uuid holds characters LVM never writes');
  const deviceSize = uint64(data, headerOffset + 32, 'PV device size');
  const dataList = readAreaList(data, headerOffset + 40, 'data area');
  const metadataList = readAreaList(data, dataList.next, 'metadata area');
  if (dataList.areas.length !== 1) fail(`the PV header lists ${dataList.areas.length} data areas, not one`);
  const bootloaderAreas = readExtension(data, metadataList.next);
  for (const area of [...dataList.areas, ...metadataList.areas, ...bootloaderAreas]) {
    if (area.offset + area.size > volumeSize) fail(`an area of the PV header (offset ${area.offset}, size ${area.size}) lies past the end of the volume (${volumeSize} bytes)`);
  }
  return { sector, uuid, deviceSize, dataAreas: dataList.areas, metadataAreas: metadataList.areas, bootloaderAreas };
}

/** The pv_header_extension (version 1 and later) after the area lists: its boot loader areas. */
function readExtension(data: DataView, at: number): DiskArea[] {
  if (at + 8 > data.byteLength) return [];
  const version = data.getUint32(at, true);
  if (version === 0) return [];
  return readAreaList(data, at + 8, 'boot loader area').areas;
}

/**
 * The committed metadata text of one metadata area, checksums verified; undefined when the
 * area holds none or is marked ignored (pvchange --metadataignore). A damaged header or text
 * is an error, which the caller may outweigh with another, good copy.
 */
export async function readMetadataCopy(volume: VolumeReader, area: DiskArea): Promise<MetadataCopy | undefined> {
  if (area.size <= MDA_HEADER_SIZE) fail(`a metadata area at ${area.offset} is ${area.size} bytes, too small for its header`);
  const header = await readAt(volume, area.offset, MDA_HEADER_SIZE, 'metadata area header');
  const data = view(header);
  const crc = lvmCrc(header.subarray(4));
  if (crc !== data.getUint32(0, true)) fail(`the metadata area header at ${area.offset} has a wrong checksum`);
  if (ascii(header, 4, 16) !== MDA_MAGIC) fail(`the metadata area header at ${area.offset} has no LVM2 magic`);
  if (data.getUint32(20, true) !== 1) fail(`the metadata area header at ${area.offset} has version ${data.getUint32(20, true)}, not 1`);
  if (uint64(data, 24, 'metadata area start') !== area.offset) fail(`the metadata area header at ${area.offset} says it starts at ${data.getBigUint64(24, true)}`);
  if (uint64(data, 32, 'metadata area size') !== area.size) fail(`the metadata area header at ${area.offset} gives a size other than the PV header's`);
  // raw_locn[0] is the committed metadata ([1], precommitted, is not yet in force).
  const offset = uint64(data, 40, 'metadata text offset');
  const size = uint64(data, 48, 'metadata text size');
  const checksum = data.getUint32(56, true);
  const flags = data.getUint32(60, true);
  if (offset === 0 || flags & RAW_LOCN_IGNORED) return undefined;
  if (offset < MDA_HEADER_SIZE || offset >= area.size || size === 0 || size > area.size - MDA_HEADER_SIZE || size > MAX_TEXT) {
    fail(`the metadata text location in the area at ${area.offset} (offset ${offset}, size ${size}) is outside the area`);
  }
  const text = await readWrapped(volume, area, offset, size);
  if (lvmCrc(text) !== checksum) fail(`the metadata text in the area at ${area.offset} has a wrong checksum`);
  return { area, text: Buffer.from(text).toString('latin1') };
}

/** The text is a ring buffer: past the area's end it continues just after the header. */
async function readWrapped(volume: VolumeReader, area: DiskArea, offset: number, size: number): Promise<Uint8Array> {
  const first = Math.min(size, area.size - offset);
  const text = new Uint8Array(size);
  text.set(await readAt(volume, area.offset + offset, first, 'metadata text'));
  if (first < size) text.set(await readAt(volume, area.offset + MDA_HEADER_SIZE, size - first, 'metadata text'), first);
  return text;
}
