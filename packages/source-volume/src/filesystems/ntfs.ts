import type { Extent } from '@cairn/core';
import { appendExtent, mergeExtents } from '../extent-list.js';
import type { UsedBlockMapper, VolumeReader } from '../extents.js';
import { InconsistentMetadataError } from './inconsistent.js';

/**
 * Used blocks of an NTFS volume: the clusters set in `$Bitmap` (MFT record 6), found through
 * the runlist of `$MFT` (record 0), plus the boot sector, cluster 0 and the backup boot sector
 * that sits just past the last sector the boot sector counts. Layouts follow ntfs-3g's
 * `layout.h`; anything that does not add up is an InconsistentMetadataError.
 */

interface NtfsGeometry {
  bytesPerSector: number;
  clusterSize: number;
  totalSectors: number;
  clusterCount: number;
  mftLcn: number;
  recordSize: number;
}

/** A run of a non-resident attribute: `length` clusters from `vcn`, at `lcn` (undefined when sparse). */
interface Run {
  vcn: number;
  lcn: number | undefined;
  length: number;
}

interface DataAttribute {
  resident?: Uint8Array;
  runs: Run[];
  dataSize: number;
  initializedSize: number;
}

/** Update sequence arrays protect every 512 bytes of a record, whatever the sector size. */
const FIXUP_STRIDE = 512;
const ATTR_ATTRIBUTE_LIST = 0x20;
const ATTR_DATA = 0x80;
const ATTR_END = 0xffffffff;
const ATTR_COMPRESSED = 0x0001;
const ATTR_ENCRYPTED = 0x4000;
const MFT_RECORD = 0;
const BITMAP_RECORD = 6;
/** Bytes of `$Bitmap` read at once (32 Mi clusters). */
const BITMAP_CHUNK = 4 * 1024 * 1024;

const isPowerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

function fail(message: string): never {
  throw new InconsistentMetadataError(`NTFS: ${message}`);
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function uint64(data: DataView, offset: number, what: string): number {
  const value = data.getBigUint64(offset, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) fail(`the ${what} (${value}) is out of range`);
  return Number(value);
}

async function readAt(volume: VolumeReader, offset: number, length: number, what: string): Promise<Uint8Array> {
  if (offset < 0 || offset + length > volume.size) fail(`the ${what} (bytes ${offset}..${offset + length}) lies past the end of the volume (${volume.size} bytes)`);
  const bytes = new Uint8Array(length);
  await volume.read(bytes, offset, length);
  return bytes;
}

export function parseNtfsBootSector(boot: Uint8Array, volumeSize: number): NtfsGeometry {
  if (boot.length < 512) fail(`the boot sector is truncated (${boot.length} bytes)`);
  const data = view(boot);
  if (Buffer.from(boot.subarray(3, 11)).toString('latin1') !== 'NTFS    ') fail('the boot sector has no "NTFS    " OEM id');
  if (boot[510] !== 0x55 || boot[511] !== 0xaa) fail('the boot sector has no 0x55AA signature');
  const bytesPerSector = data.getUint16(11, true);
  if (!isPowerOfTwo(bytesPerSector) || bytesPerSector < 256 || bytesPerSector > 4096) fail(`bytes per sector is ${bytesPerSector}, not a power of two from 256 to 4096`);
  // 1..128 sectors, or 240..255 meaning 2^(256 - n) sectors (clusters above 64 KiB).
  const encoded = boot[13]!;
  let sectorsPerCluster: number;
  if (encoded <= 0x80) {
    if (!isPowerOfTwo(encoded)) fail(`sectors per cluster is ${encoded}, not a power of two`);
    sectorsPerCluster = encoded;
  } else {
    if (encoded < 240) fail(`sectors per cluster is encoded as 0x${encoded.toString(16)}, which is not valid`);
    sectorsPerCluster = 2 ** (256 - encoded);
  }
  const clusterSize = sectorsPerCluster * bytesPerSector;
  if (clusterSize > 2 * 1024 * 1024) fail(`the cluster size ${clusterSize} exceeds 2 MiB`);
  const totalSectors = uint64(data, 0x28, 'total sector count');
  const clusterCount = Math.floor(totalSectors / sectorsPerCluster);
  if (clusterCount === 0) fail(`the volume has no whole cluster (${totalSectors} sectors)`);
  if (totalSectors * bytesPerSector > volumeSize) {
    fail(`the filesystem (${totalSectors} sectors of ${bytesPerSector} bytes) is larger than the volume (${volumeSize} bytes)`);
  }
  const mftLcn = uint64(data, 0x30, 'MFT cluster number');
  if (mftLcn >= clusterCount) fail(`the MFT starts at cluster ${mftLcn}, past the last cluster ${clusterCount - 1}`);
  const perRecord = data.getInt8(0x40);
  const recordSize = perRecord > 0 ? perRecord * clusterSize : perRecord < 0 && perRecord >= -31 ? 2 ** -perRecord : 0;
  if (!isPowerOfTwo(recordSize) || recordSize < FIXUP_STRIDE || recordSize > 65536) fail(`the MFT record size (encoded ${perRecord}) is ${recordSize} bytes, not a power of two from 512 to 65536`);
  return { bytesPerSector, clusterSize, totalSectors, clusterCount, mftLcn, recordSize };
}

/** Checks an MFT record's header and applies its update sequence array in place. */
export function applyFixups(record: Uint8Array, number: number): void {
  const data = view(record);
  const magic = Buffer.from(record.subarray(0, 4)).toString('latin1');
  if (magic !== 'FILE') fail(`MFT record ${number} has the signature ${JSON.stringify(magic)}, not "FILE"`);
  const usaOffset = data.getUint16(4, true);
  const usaCount = data.getUint16(6, true);
  const blocks = record.length / FIXUP_STRIDE;
  if (usaCount !== blocks + 1) fail(`MFT record ${number} has ${usaCount} update sequence entries where a ${record.length}-byte record needs ${blocks + 1}`);
  if (usaOffset % 2 !== 0 || usaOffset < 0x28 || usaOffset + usaCount * 2 > FIXUP_STRIDE - 2) fail(`MFT record ${number} has its update sequence array at an invalid offset ${usaOffset}`);
  const sequence = data.getUint16(usaOffset, true);
  for (let block = 1; block <= blocks; block++) {
    const at = block * FIXUP_STRIDE - 2;
    const found = data.getUint16(at, true);
    if (found !== sequence) {
      fail(`MFT record ${number} fails its update sequence check in 512-byte block ${block - 1} (0x${found.toString(16)} where 0x${sequence.toString(16)} was expected): a torn or corrupt write`);
    }
    data.setUint16(at, data.getUint16(usaOffset + block * 2, true), true);
  }
}

/** Decodes a mapping-pairs array; LCN deltas are signed, a zero-length offset field means a sparse run. */
export function decodeRunlist(bytes: Uint8Array, startVcn: number, clusterCount: number, what: string): Run[] {
  const runs: Run[] = [];
  let vcn = startVcn;
  let lcn = 0;
  let at = 0;
  for (;;) {
    if (at >= bytes.length) fail(`the runlist of ${what} is not terminated`);
    const header = bytes[at]!;
    if (header === 0) break;
    const lengthSize = header & 0x0f;
    const offsetSize = header >> 4;
    if (lengthSize === 0 || lengthSize > 8 || offsetSize > 8) fail(`the runlist of ${what} has an invalid header byte 0x${header.toString(16)}`);
    if (at + 1 + lengthSize + offsetSize > bytes.length) fail(`the runlist of ${what} runs past its attribute`);
    const length = readInt(bytes, at + 1, lengthSize, false);
    if (length <= 0) fail(`the runlist of ${what} has a run of ${length} clusters`);
    let runLcn: number | undefined;
    if (offsetSize > 0) {
      lcn += readInt(bytes, at + 1 + lengthSize, offsetSize, true);
      if (lcn < 0 || lcn + length > clusterCount) {
        fail(`the runlist of ${what} has a run of clusters ${lcn}..${lcn + length - 1}, past the end of the volume (${clusterCount} clusters)`);
      }
      runLcn = lcn;
    }
    runs.push({ vcn, lcn: runLcn, length });
    vcn += length;
    at += 1 + lengthSize + offsetSize;
  }
  return runs;
}

function readInt(bytes: Uint8Array, at: number, size: number, signed: boolean): number {
  let value = 0n;
  for (let i = size - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[at + i]!);
  if (signed && size > 0 && bytes[at + size - 1]! & 0x80) value -= 1n << BigInt(size * 8);
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < -BigInt(Number.MAX_SAFE_INTEGER)) fail(`a runlist value (${value}) is out of range`);
  return Number(value);
}

/** The unnamed $DATA attribute of a base MFT record whose fixups have been applied. */
function findData(record: Uint8Array, number: number, fs: NtfsGeometry): DataAttribute {
  const data = view(record);
  const flags = data.getUint16(0x16, true);
  if ((flags & 0x01) === 0) fail(`MFT record ${number} is not in use`);
  if (uint64(data, 0x20, 'base record reference') !== 0) fail(`MFT record ${number} is an extension record, not a base record`);
  const bytesInUse = data.getUint32(0x18, true);
  if (bytesInUse > record.length) fail(`MFT record ${number} claims ${bytesInUse} bytes in use, more than its ${record.length} bytes`);
  let at = data.getUint16(0x14, true);
  let hasList = false;
  for (;;) {
    if (at + 4 > bytesInUse) fail(`MFT record ${number} has no end-of-attributes marker`);
    const type = data.getUint32(at, true);
    if (type === ATTR_END) break;
    if (at + 16 > bytesInUse) fail(`MFT record ${number} has an attribute header past its bytes in use`);
    const length = data.getUint32(at + 4, true);
    if (length < 16 || length % 8 !== 0 || at + length > bytesInUse) fail(`MFT record ${number} has an attribute of invalid length ${length} at offset ${at}`);
    if (type === ATTR_ATTRIBUTE_LIST) hasList = true;
    if (type === ATTR_DATA && record[at + 9] === 0) return dataAttribute(record.subarray(at, at + length), number, fs);
    at += length;
  }
  fail(`MFT record ${number} has no unnamed $DATA attribute${hasList ? ' in its base record (it has an attribute list, which is not followed)' : ''}`);
}

function dataAttribute(attr: Uint8Array, number: number, fs: NtfsGeometry): DataAttribute {
  const data = view(attr);
  const what = `the $DATA attribute of MFT record ${number}`;
  const flags = data.getUint16(12, true);
  if (flags & (ATTR_COMPRESSED | ATTR_ENCRYPTED)) fail(`${what} is compressed or encrypted`);
  if (attr[8] === 0) {
    const valueLength = data.getUint32(16, true);
    const valueOffset = data.getUint16(20, true);
    if (valueOffset + valueLength > attr.length) fail(`${what} is resident but its value lies outside the attribute`);
    const value = attr.subarray(valueOffset, valueOffset + valueLength);
    return { resident: value, runs: [], dataSize: valueLength, initializedSize: valueLength };
  }
  if (attr.length < 64) fail(`${what} is non-resident but its header is truncated`);
  const lowestVcn = uint64(data, 16, `lowest VCN of ${what}`);
  const highestVcn = data.getBigInt64(24, true);
  const runsOffset = data.getUint16(32, true);
  const dataSize = uint64(data, 48, `data size of ${what}`);
  const initializedSize = uint64(data, 56, `initialized size of ${what}`);
  if (lowestVcn !== 0) fail(`${what} starts at VCN ${lowestVcn}, not 0 (it continues in another record)`);
  if (runsOffset >= attr.length) fail(`${what} has its runlist at offset ${runsOffset}, outside the attribute`);
  const runs = decodeRunlist(attr.subarray(runsOffset), 0, fs.clusterCount, what);
  const mapped = runs.reduce((n, run) => n + run.length, 0);
  if (BigInt(mapped) !== highestVcn + 1n) fail(`${what} maps ${mapped} clusters but its highest VCN is ${highestVcn}`);
  return { runs, dataSize, initializedSize };
}

/** Reads `length` bytes at `offset` of a non-resident stream; sparse runs read as zeros. */
async function readStream(volume: VolumeReader, fs: NtfsGeometry, attr: DataAttribute, offset: number, length: number, what: string): Promise<Uint8Array> {
  if (attr.resident) {
    if (offset + length > attr.resident.length) fail(`${what}: bytes ${offset}..${offset + length} lie past its resident value`);
    return attr.resident.slice(offset, offset + length);
  }
  const out = new Uint8Array(length);
  let done = 0;
  for (const run of attr.runs) {
    if (done === length) break;
    const runStart = run.vcn * fs.clusterSize;
    const runEnd = runStart + run.length * fs.clusterSize;
    const at = offset + done;
    if (at >= runEnd || at < runStart) continue;
    const count = Math.min(length - done, runEnd - at);
    if (run.lcn !== undefined) {
      const bytes = await readAt(volume, run.lcn * fs.clusterSize + (at - runStart), count, what);
      out.set(bytes, done);
    }
    done += count;
  }
  if (done < length) fail(`${what}: bytes ${offset}..${offset + length} are not mapped by its runlist`);
  return out;
}



/** Whether the byte range lies inside one of the sorted, joined extents. */
function covered(extents: readonly Extent[], offset: number, length: number): boolean {
  let low = 0;
  let high = extents.length - 1;
  while (low <= high) {
    const mid = (low + high) >> 1;
    const extent = extents[mid]!;
    if (extent.offset + extent.length <= offset) low = mid + 1;
    else if (extent.offset > offset) high = mid - 1;
    else return offset + length <= extent.offset + extent.length;
  }
  return false;
}

async function readRecord(volume: VolumeReader, fs: NtfsGeometry, mft: DataAttribute | undefined, number: number): Promise<Uint8Array> {
  const what = `MFT record ${number}`;
  const record = mft
    ? await readStream(volume, fs, mft, number * fs.recordSize, fs.recordSize, what)
    : await readAt(volume, fs.mftLcn * fs.clusterSize + number * fs.recordSize, fs.recordSize, what);
  applyFixups(record, number);
  const data = view(record);
  // NTFS 3.1 records carry their own number; older ones have the update sequence array there.
  if (data.getUint16(4, true) >= 0x30 && data.getUint32(0x2c, true) !== number) fail(`${what} says it is record ${data.getUint32(0x2c, true)}`);
  return record;
}

export const mapNtfsUsedBlocks: UsedBlockMapper = async (volume) => {
  const boot = await readAt(volume, 0, Math.min(volume.size, 512), 'boot sector');
  const fs = parseNtfsBootSector(boot, volume.size);

  const mft = findData(await readRecord(volume, fs, undefined, MFT_RECORD), MFT_RECORD, fs);
  if (mft.resident) fail('the $DATA attribute of $MFT is resident');
  if (mft.dataSize < (BITMAP_RECORD + 1) * fs.recordSize) fail(`$MFT holds ${mft.dataSize} bytes, too few for record ${BITMAP_RECORD}`);
  const bitmap = findData(await readRecord(volume, fs, mft, BITMAP_RECORD), BITMAP_RECORD, fs);
  const bitmapBytes = Math.ceil(fs.clusterCount / 8);
  if (bitmap.initializedSize < bitmapBytes || bitmap.dataSize < bitmap.initializedSize) {
    fail(`$Bitmap holds ${bitmap.initializedSize} initialized bytes (data size ${bitmap.dataSize}), too few for ${fs.clusterCount} clusters (${bitmapBytes} bytes)`);
  }

  // Clusters set in $Bitmap, in order; bits past the last cluster are ignored.
  const extents: Extent[] = [];
  const { clusterSize, clusterCount } = fs;
  let runStart = -1;
  const close = (cluster: number): void => {
    appendExtent(extents, runStart * clusterSize, (cluster - runStart) * clusterSize);
    runStart = -1;
  };
  for (let start = 0; start < bitmapBytes; start += BITMAP_CHUNK) {
    const length = Math.min(BITMAP_CHUNK, bitmapBytes - start);
    const chunk = await readStream(volume, fs, bitmap, start, length, '$Bitmap');
    for (let i = 0; i < length; i++) {
      const byte = chunk[i]!;
      const base = (start + i) * 8;
      if (base + 8 <= clusterCount && (byte === 0 || byte === 0xff)) {
        if (byte === 0xff && runStart < 0) runStart = base;
        if (byte === 0 && runStart >= 0) close(base);
        continue;
      }
      for (let bit = 0; bit < 8 && base + bit < clusterCount; bit++) {
        const set = (byte & (1 << bit)) !== 0;
        if (set && runStart < 0) runStart = base + bit;
        if (!set && runStart >= 0) close(base + bit);
      }
    }
  }
  if (runStart >= 0) close(clusterCount);

  // A bitmap that leaves the MFT or itself free is not one to trust.
  for (const [name, attr] of [['$MFT', mft], ['$Bitmap', bitmap]] as const) {
    for (const run of attr.runs) {
      if (run.lcn !== undefined && !covered(extents, run.lcn * clusterSize, run.length * clusterSize)) {
        fail(`$Bitmap marks clusters of ${name} (${run.lcn}..${run.lcn + run.length - 1}) as free`);
      }
    }
  }

  extents.push({ offset: 0, length: Math.max(fs.bytesPerSector, clusterSize) });
  const backupBoot = fs.totalSectors * fs.bytesPerSector;
  if (backupBoot + fs.bytesPerSector <= volume.size) extents.push({ offset: backupBoot, length: fs.bytesPerSector });
  return mergeExtents(extents);
};
