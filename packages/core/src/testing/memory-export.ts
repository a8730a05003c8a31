import type { ExportExtent, ExportSource } from '../nbd/export-source.js';

export interface MemoryExportOptions {
  name?: string;
  description?: string;
  writable?: boolean;
  /** Ranges reported as holes (NBD_STATE_HOLE | NBD_STATE_ZERO); they must read as zeros. */
  holes?: ReadonlyArray<{ offset: number; length: number }>;
}

/**
 * An ExportSource over a Buffer: the NBD server's tests serve it, and so can anyone who
 * wants a disk image in memory. Writes change the buffer (when writable).
 */
export class MemoryExport implements ExportSource {
  readonly name: string;
  readonly description: string;
  readonly writable: boolean;
  #holes: Array<{ offset: number; length: number }>;
  flushes = 0;

  constructor(
    readonly data: Buffer,
    options: MemoryExportOptions = {},
  ) {
    this.name = options.name ?? '';
    this.description = options.description ?? `${data.length} bytes in memory`;
    this.writable = options.writable ?? false;
    this.#holes = [...(options.holes ?? [])].sort((a, b) => a.offset - b.offset);
    for (const hole of this.#holes) {
      if (data.subarray(hole.offset, hole.offset + hole.length).some((byte) => byte !== 0)) throw new Error(`The hole at ${hole.offset} holds data`);
    }
  }

  get size(): number {
    return this.data.length;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    return Buffer.from(this.data.subarray(offset, offset + length));
  }

  async blockStatus(offset: number, length: number): Promise<ExportExtent[]> {
    const end = Math.min(offset + length, this.size);
    const extents: ExportExtent[] = [];
    let at = offset;
    for (const hole of this.#holes) {
      const holeEnd = hole.offset + hole.length;
      if (holeEnd <= at || hole.offset >= end) continue;
      if (hole.offset > at) extents.push({ offset: at, length: hole.offset - at, hole: false, zero: false });
      const stop = Math.min(holeEnd, end);
      extents.push({ offset: Math.max(hole.offset, at), length: stop - Math.max(hole.offset, at), hole: true, zero: true });
      at = stop;
    }
    if (at < end) extents.push({ offset: at, length: end - at, hole: false, zero: false });
    return extents;
  }

  async prefetch(): Promise<void> {}

  async write(offset: number, data: Buffer): Promise<void> {
    if (!this.writable) throw new Error('read-only');
    data.copy(this.data, offset);
    this.#holes = this.#holes.filter((hole) => hole.offset + hole.length <= offset || hole.offset >= offset + data.length);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    await this.write(offset, Buffer.alloc(length));
  }

  async flush(): Promise<void> {
    this.flushes++;
  }

  async close(): Promise<void> {}
}
