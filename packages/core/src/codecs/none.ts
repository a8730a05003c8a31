import type { CodecModule } from '../codec.js';

/** Stores data as it is. Built in; also what any codec falls back to when compression would not shrink a blob. */
const none: CodecModule = {
  name: 'none',
  headerId: 0,
  create() {
    return {
      compress: (data) => data,
      decompress(data, rawLength) {
        if (data.length !== rawLength) throw new Error(`stored blob has ${data.length} bytes, expected ${rawLength}`);
        return data;
      },
      decompressInto(data, into) {
        if (data.length !== into.length) throw new Error(`stored blob has ${data.length} bytes, expected ${into.length}`);
        into.set(data);
      },
    };
  },
};
export default none;
