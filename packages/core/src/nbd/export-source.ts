/*
 * What `cairn serve` exports over NBD: a block image that can be read at any offset, tells
 * which of its ranges hold data (NBD_CMD_BLOCK_STATUS, `base:allocation`), and, with an
 * overlay, takes writes without changing the snapshot. The protocol server (nbd-server.ts)
 * knows only this interface; the snapshot reader and the overlay implement it.
 */

/** One run of an export's allocation map, as `base:allocation` reports it. */
export interface ExportExtent {
  offset: number;
  length: number;
  /** NBD_STATE_HOLE: no data stored here (an unused block of a used-mode image, a never-written range). */
  hole: boolean;
  /** NBD_STATE_ZERO: reads as zeros. */
  zero: boolean;
}

export interface ExportSource {
  /** The export name clients ask for: '' (the default export: the whole disk), 'p1', 'p2', … */
  readonly name: string;
  /** A line for NBD_INFO_DESCRIPTION, e.g. `laptop-system 4982076e05ab: partition 2 (ext4)`. */
  readonly description: string;
  /** Bytes. */
  readonly size: number;
  /** False: writes are refused (NBD_FLAG_READ_ONLY). */
  readonly writable: boolean;
  /** Exactly `length` bytes from `offset` (offset + length ≤ size). */
  read(offset: number, length: number): Promise<Buffer>;
  /** Extents covering [offset, offset + length) in order, at least one, none beyond the end. */
  blockStatus(offset: number, length: number): Promise<ExportExtent[]>;
  /** Starts fetching [offset, offset + length) into the cache (NBD_CMD_CACHE). */
  prefetch(offset: number, length: number): Promise<void>;
  write?(offset: number, data: Buffer): Promise<void>;
  writeZeroes?(offset: number, length: number): Promise<void>;
  /** Makes written data durable (NBD_CMD_FLUSH). */
  flush?(): Promise<void>;
  close(): Promise<void>;
}
