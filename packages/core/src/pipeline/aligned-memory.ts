/*
 * Memory that O_DIRECT I/O accepts. Direct I/O needs the buffer's address, the length and
 * the file offset aligned to the device's logical block size; JavaScript cannot choose where
 * a SharedArrayBuffer lives, but the buffer of a WebAssembly memory starts on a page
 * boundary. Chunk slots are allocated here, so a restored chunk goes from its slot straight
 * to the disk.
 */

import { loadPosix } from '../files/posix.js';

// Node has WebAssembly; TypeScript declares it only with the DOM library, which core does not use.
declare const WebAssembly: { Memory: new (descriptor: { initial: number; maximum: number; shared: boolean }) => { buffer: SharedArrayBuffer } };

const WASM_PAGE = 64 * 1024;
/** The largest logical block size of Linux block devices; a multiple of every smaller one. */
export const DIRECT_IO_ALIGNMENT = 4096;

const pageAligned = new WeakSet<ArrayBufferLike>();

/** Asks the kernel to back a buffer with transparent huge pages; set once @cairn/posix is loaded. */
let adviseHugePages: ((buffer: Uint8Array) => boolean) | undefined;
/** Gives a buffer's whole pages back to the kernel; set once @cairn/posix is loaded. */
let releasePages: ((buffer: Uint8Array) => boolean) | undefined;
let loadingMemoryAdvice: Promise<void> | undefined;

/**
 * Lets the buffers allocated from then on ask for transparent huge pages (those allocated
 * before go without), and `releaseTail` give pages back. Every first touch of a 4 KiB page
 * is a page fault, and on the virtual machines measured one costs about 11 µs: 45 ms to fill
 * a fresh 16 MiB pack buffer, and 50-80 thousand faults in a volume backup. A 2 MiB page is one fault. With huge pages for
 * the chunk slots and pack buffers, the corpus's incremental volume backup took 1.92-2.18
 * against 2.08-2.24 s (43 against 56-76 thousand faults), its restore 3.9-4.4 against 4.2-5.5 s.
 * Without the native helper, buffers simply get small pages.
 */
export function useMemoryAdvice(): Promise<void> {
  loadingMemoryAdvice ??= loadPosix().then(
    (posix) => {
      adviseHugePages = posix.adviseHugePages;
      releasePages = posix.releasePages;
    },
    () => undefined,
  );
  return loadingMemoryAdvice;
}

/**
 * Lets the kernel take back the pages of `buffer` from `from` on (they read as zeros after),
 * so that a slot sized for the largest chunk is resident only as far as common chunks reach:
 * a file backup's 8 MiB slots otherwise each keep the pages of the largest chunk they ever held
 * (MADV_DONTNEED; whole 2 MiB steps keep a huge page whole). Nothing without the native helper.
 */
export function releaseTail(buffer: SharedArrayBuffer, from: number): void {
  if (from < buffer.byteLength) releasePages?.(new Uint8Array(buffer, from));
}

/** A zero-filled shared buffer of at least `size` bytes (whole 64 KiB pages) starting on a page boundary. */
export function allocateAligned(size: number): SharedArrayBuffer {
  const pages = Math.max(1, Math.ceil(size / WASM_PAGE));
  const buffer = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }).buffer;
  pageAligned.add(buffer);
  adviseHugePages?.(new Uint8Array(buffer));
  return buffer;
}

/** Whether writing `data` at `offset` meets direct I/O's alignment rules. */
export function suitsDirectIo(data: Uint8Array, offset: number): boolean {
  return (
    pageAligned.has(data.buffer) &&
    data.byteOffset % DIRECT_IO_ALIGNMENT === 0 &&
    data.byteLength % DIRECT_IO_ALIGNMENT === 0 &&
    offset % DIRECT_IO_ALIGNMENT === 0
  );
}

/**
 * What to write with direct I/O to store `data` at a block-aligned file offset: `data`
 * extended to a whole number of blocks, when it starts on a block boundary of page-aligned
 * memory that has room for the extension. The caller then truncates the file to
 * `data.length`. Undefined when direct I/O cannot take `data` as it is.
 */
export function directIoSpan(data: Uint8Array): Uint8Array | undefined {
  if (!pageAligned.has(data.buffer) || data.byteOffset % DIRECT_IO_ALIGNMENT !== 0) return undefined;
  const length = Math.ceil(data.byteLength / DIRECT_IO_ALIGNMENT) * DIRECT_IO_ALIGNMENT;
  if (length === 0 || data.byteOffset + length > data.buffer.byteLength) return undefined;
  return new Uint8Array(data.buffer, data.byteOffset, length);
}
