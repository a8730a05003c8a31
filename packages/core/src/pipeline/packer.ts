import { packIdOf, seal } from '../crypto/crypto.js';
import { Keys, encodeIndex, encodePackHeader, type BlobType, type IndexedPack, type PackedBlob } from '../repository/format.js';
import { packIdSchemeOf, type Repository } from '../repository/repository.js';

/** Packs written before an index file is flushed, so an interrupted run keeps most of its work. */
const PACKS_PER_INDEX = 16;
/** Pack uploads in flight at once. */
const UPLOAD_CONCURRENCY = 3;

/**
 * Groups sealed blobs into packs, uploads them, and writes index files for uploaded packs.
 * `add` waits while too many uploads are in flight (backpressure). Index files only ever
 * name packs whose upload completed, so a crash cannot leave an index pointing at nothing.
 */
export class Packer {
  #blobs: PackedBlob[] = [];
  #parts: Buffer[] = [];
  #size = 0;
  readonly #uploads = new Set<Promise<void>>();
  #uploaded: IndexedPack[] = [];
  #failure: unknown;
  /** Bytes of packs and indexes this packer stored. */
  bytesWritten = 0;
  packsWritten = 0;

  constructor(private readonly repository: Repository) {}

  async add(type: BlobType, id: Buffer, sealed: Buffer, rawLength: number): Promise<void> {
    this.#throwIfFailed();
    this.#blobs.push({ type, id, offset: this.#size, length: sealed.length, rawLength });
    this.#parts.push(sealed);
    this.#size += sealed.length;
    if (this.#size >= this.repository.config.packSize) await this.#closePack();
  }

  /** Closes the open pack, waits for every upload and writes the remaining index. */
  async flush(): Promise<void> {
    if (this.#blobs.length > 0) await this.#closePack();
    await Promise.allSettled(this.#uploads);
    this.#throwIfFailed();
    await this.#writeIndex();
  }

  /** Waits for uploads in flight without writing anything more (used after a failure). */
  async abandon(): Promise<void> {
    await Promise.allSettled(this.#uploads);
  }

  async #closePack(): Promise<void> {
    const blobs = this.#blobs;
    const header = seal(this.repository.masterKey.encryption, encodePackHeader(blobs));
    const trailer = Buffer.alloc(4);
    trailer.writeUInt32LE(header.length);
    const pack = Buffer.concat([...this.#parts, header, trailer]);
    this.#blobs = [];
    this.#parts = [];
    this.#size = 0;

    while (this.#uploads.size >= UPLOAD_CONCURRENCY) await Promise.race(this.#uploads);
    this.#throwIfFailed();
    const id = packIdOf(packIdSchemeOf(this.repository.config), pack);
    const upload = this.repository.target.put(Keys.pack(id.toString('hex')), pack).then(
      async () => {
        this.bytesWritten += pack.length;
        this.packsWritten++;
        this.#uploaded.push({ id, blobs });
        if (this.#uploaded.length >= PACKS_PER_INDEX) await this.#writeIndex();
      },
      (err: unknown) => {
        this.#failure ??= err;
      },
    );
    const tracked = upload.finally(() => this.#uploads.delete(tracked));
    this.#uploads.add(tracked);
  }

  async #writeIndex(): Promise<void> {
    if (this.#uploaded.length === 0) return;
    const packs = this.#uploaded;
    this.#uploaded = [];
    try {
      const { size } = await this.repository.putSealed('index', encodeIndex(packs));
      this.bytesWritten += size;
    } catch (err) {
      this.#failure ??= err;
    }
  }

  #throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }
}
