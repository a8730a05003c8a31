import type { UsedBlockMappers } from '../extents.js';
import { mapBtrfsUsedBlocks } from './btrfs.js';
import { mapExt4UsedBlocks } from './ext4.js';
import { mapFatUsedBlocks } from './fat.js';
import { mapLuksUsedBlocks } from './luks.js';
import { createLvmMapper } from './lvm.js';
import { mapNtfsUsedBlocks } from './ntfs.js';
import { mapSwapUsedBlocks } from './swap.js';
import { mapXfsUsedBlocks } from './xfs.js';

/** Used-block mappers by the filesystem name the probe reports; any other filesystem is imaged exactly. */
export const USED_BLOCK_MAPPERS: UsedBlockMappers = new Map([
  ['btrfs', mapBtrfsUsedBlocks],
  ['ext2', mapExt4UsedBlocks],
  ['ext3', mapExt4UsedBlocks],
  ['ext4', mapExt4UsedBlocks],
  ['fat12', mapFatUsedBlocks],
  ['fat16', mapFatUsedBlocks],
  ['fat32', mapFatUsedBlocks],
  ['ntfs', mapNtfsUsedBlocks],
  ['swap', mapSwapUsedBlocks],
  ['luks', mapLuksUsedBlocks],
  ['xfs', mapXfsUsedBlocks],
  ['lvm2', createLvmMapper(() => USED_BLOCK_MAPPERS)],
]);
