import { CairnError } from '@cairn/core';

/**
 * A filesystem's allocation metadata cannot be trusted (or uses a feature the mapper does not
 * understand), so a used-block map would be a guess. The caller images the volume exactly and
 * records `message` as the reason.
 */
export class InconsistentMetadataError extends CairnError {
  override readonly code = 'CAIRN_INCONSISTENT_METADATA';
}
