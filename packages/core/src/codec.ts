/**
 * Compression codecs. A codec runs inside worker threads, so it is registered as a module
 * URL, not as an object: each worker imports the module and calls `create(settings)`.
 * The module's default export must be a `CodecModule`.
 *
 * Every stored blob begins with the codec's `headerId` (inside the encryption), so a
 * repository may mix codecs over time and a restore picks the right decoder.
 */
export interface Codec {
  /**
   * The result may be a view of the codec's own buffer, valid until its next call: the
   * pipeline seals it at once, and a copy per chunk was garbage the size of the chunk.
   */
  compress(data: Uint8Array): Uint8Array;
  /**
   * `rawLength` is the exact length the data had before compression. Decoding must not
   * depend on the settings passed to `create`: they are not stored with the blobs, and a
   * restore creates decoders without them.
   */
  decompress(data: Uint8Array, rawLength: number): Uint8Array;
  /**
   * Optional: decompresses straight into `into`, which has exactly the plaintext's length;
   * throws when the data does not fill it exactly. Saves a copy (and an allocation) per
   * chunk on restore, where `into` is the shared buffer the chunk is written from.
   */
  decompressInto?(data: Uint8Array, into: Uint8Array): void;
}

export interface CodecModule {
  /** Name used in job files (`compression.type`). */
  readonly name: string;
  /** Stable number written into each blob; 0 is `none`, 1 is `zstd`. Values 0–255. */
  readonly headerId: number;
  create(settings: CodecSettings): Codec;
}

export interface CodecSettings {
  type: string;
  [setting: string]: unknown;
}

export interface CodecRegistration {
  name: string;
  headerId: number;
  /** Absolute `file:` URL of an ES module whose default export is a `CodecModule`. */
  moduleUrl: string;
}
