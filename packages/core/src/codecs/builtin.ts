import type { CodecRegistration } from '../codec.js';
import { CODEC_NONE } from '../repository/format.js';

/** The `none` codec every repository can read, registered by the core itself. */
export const NONE_CODEC: CodecRegistration = {
  name: 'none',
  headerId: CODEC_NONE,
  // Workers import built JavaScript, also when this module runs from source in unit tests.
  moduleUrl: new URL(import.meta.url.endsWith('.ts') ? '../../dist/codecs/none.js' : './none.js', import.meta.url).href,
};
