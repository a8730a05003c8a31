import type { UsedBlockMappers } from '../extents.js';

/** Used-block mappers by the filesystem name the probe reports; any other filesystem is imaged exactly. */
export const USED_BLOCK_MAPPERS: UsedBlockMappers = new Map([]);
