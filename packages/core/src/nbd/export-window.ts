import type { ExportExtent, ExportSource } from './export-source.js';
import { checkRange } from './extents.js';

/**
 * A byte range of another export as an export of its own: one partition of the disk (`p1`,
 * `p2`, …). Reads and writes go to the disk at the partition's offset, so a partition written
 * through an overlay is the same bytes as that part of the overlaid disk.
 */
export class ExportWindow implements ExportSource {
  readonly writable: boolean;
  readonly write?: (offset: number, data: Buffer) => Promise<void>;
  readonly writeZeroes?: (offset: number, length: number) => Promise<void>;
  readonly flush?: () => Promise<void>;

  constructor(
    private readonly disk: ExportSource,
    readonly name: string,
    readonly description: string,
    private readonly offset: number,
    readonly size: number,
  ) {
    if (offset < 0 || offset + size > disk.size) throw new RangeError(`export '${name}' (${size} bytes at ${offset}) lies outside the disk of ${disk.size} bytes`);
    this.writable = disk.writable;
    if (disk.writable && disk.write && disk.writeZeroes && disk.flush) {
      const { write, writeZeroes, flush } = { write: disk.write.bind(disk), writeZeroes: disk.writeZeroes.bind(disk), flush: disk.flush.bind(disk) };
      this.write = async (at, data) => {
        checkRange(this, at, data.length);
        await write(offset + at, data);
      };
      this.writeZeroes = async (at, length) => {
        checkRange(this, at, length);
        await writeZeroes(offset + at, length);
      };
      this.flush = flush;
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, offset, length);
    return await this.disk.read(this.offset + offset, length);
  }

  async blockStatus(offset: number, length: number): Promise<ExportExtent[]> {
    checkRange(this, offset, length);
    const extents = await this.disk.blockStatus(this.offset + offset, length);
    return extents.map((extent) => ({ ...extent, offset: extent.offset - this.offset }));
  }

  async prefetch(offset: number, length: number): Promise<void> {
    checkRange(this, offset, length);
    await this.disk.prefetch(this.offset + offset, length);
  }

  /** The disk is closed by whoever opened it. */
  async close(): Promise<void> {}
}
