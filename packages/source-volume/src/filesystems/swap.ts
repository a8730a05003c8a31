import type { UsedBlockMapper, VolumeReader } from '../extents.js';
import { InconsistentMetadataError } from './inconsistent.js';

/**
 * A Linux swap area holds nothing worth keeping once the machine is off: only its header page
 * (version, size, bad pages, UUID, label) is stored, and a restore leaves zeros after it, which
 * `swapon` accepts as it reads only the header. Layout: the kernel's `union swap_header`
 * (include/linux/swap.h), written in the byte order of the machine that ran mkswap. Anything
 * else that carries the probe's signature (an old version 0 area, a header from another
 * architecture, sizes that do not add up) is imaged exactly, with the reason.
 */

/** Page sizes mkswap may have used, smallest first: the signature ends the header page. */
const PAGE_SIZES = [4096, 8192, 16384, 65536];
const SIGNATURE_V1 = 'SWAPSPACE2';
const SIGNATURE_V0 = 'SWAP-SPACE';
const INFO = 1024;
/** The bad-page list starts after the header fields, padding included (1024 + 512). */
const BAD_PAGES = 1536;
/** mkswap refuses areas smaller than this many pages. */
const MIN_PAGES = 10;

function fail(message: string): never {
  throw new InconsistentMetadataError(`swap: ${message}`);
}

export interface SwapHeader {
  pageSize: number;
  lastPage: number;
  badPages: number;
  uuid: string;
  label: string;
}

const ascii = (bytes: Uint8Array, start: number, length: number): string => Buffer.from(bytes.subarray(start, start + length)).toString('latin1');

function formatUuid(bytes: Uint8Array): string {
  const hex = Buffer.from(bytes).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Parses and checks a swap header page; `head` holds at least the first 64 KiB (or the whole volume). */
export function parseSwapHeader(head: Uint8Array, volumeSize: number): SwapHeader {
  const pageSize = PAGE_SIZES.find((size) => size <= head.length && [SIGNATURE_V1, SIGNATURE_V0].includes(ascii(head, size - 10, 10)));
  if (pageSize === undefined) fail('no swap signature at the end of a 4, 8, 16 or 64 KiB page');
  if (ascii(head, pageSize - 10, 10) === SIGNATURE_V0) fail('a version 0 swap area (SWAP-SPACE), which no current kernel uses');
  const data = new DataView(head.buffer, head.byteOffset, pageSize);
  const version = data.getUint32(INFO, true);
  if (version === 0x01000000) fail('the header was written by a machine of the other byte order');
  if (version !== 1) fail(`header version ${version}, not 1`);
  const lastPage = data.getUint32(INFO + 4, true);
  const badPages = data.getUint32(INFO + 8, true);
  if (lastPage + 1 < MIN_PAGES) fail(`the area has ${lastPage + 1} pages, fewer than the ${MIN_PAGES} mkswap makes`);
  if ((lastPage + 1) * pageSize > volumeSize) fail(`the header counts ${lastPage + 1} pages of ${pageSize} bytes but the volume holds only ${volumeSize} bytes`);
  if (badPages > (pageSize - BAD_PAGES) / 4 || badPages > lastPage) fail(`the header lists ${badPages} bad pages, more than fit`);
  const uuid = formatUuid(head.subarray(INFO + 12, INFO + 28));
  const labelBytes = head.subarray(INFO + 28, INFO + 44);
  const end = labelBytes.indexOf(0);
  const label = Buffer.from(labelBytes.subarray(0, end === -1 ? labelBytes.length : end)).toString('utf8');
  return { pageSize, lastPage, badPages, uuid, label };
}

async function readHead(volume: VolumeReader): Promise<Uint8Array> {
  const head = new Uint8Array(Math.min(volume.size, Math.max(...PAGE_SIZES)));
  await volume.read(head, 0, head.length);
  return head;
}

/** The header page is the whole map: the pages after it restore as zeros. */
export const mapSwapUsedBlocks: UsedBlockMapper = async (volume) => {
  const header = parseSwapHeader(await readHead(volume), volume.size);
  return [{ offset: 0, length: header.pageSize }];
};
