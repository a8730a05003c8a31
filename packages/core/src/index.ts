// The public API of @cairn/core. Plugins import only from here (and `@cairn/core/testing`).
export * from './errors.js';
export * from './lifecycle.js';
export * from './services.js';
export * from './target.js';
export * from './source.js';
export * from './codec.js';
export * from './hooks.js';
export * from './plugin.js';
export { allocateAligned, directIoSpan, DIRECT_IO_ALIGNMENT } from './pipeline/aligned-memory.js';
export { main } from './cli/main.js';
// Block devices: geometry, loop devices, mounts, and what is built on a device (used by sources and restore).
export {
  type DeviceNumber,
  splitDeviceNumber,
  formatDeviceNumber,
  parseDeviceNumber,
  sameDeviceNumber,
  type BlockDeviceGeometry,
  readBlockDeviceGeometry,
  deviceNodePath,
  deviceLabel,
  type LoopBacking,
  type LoopDevice,
  listLoopDevices,
  findLoopDevicesBackedBy,
  loopRangesOverlap,
  type MountInfoEntry,
  parseMountInfo,
  type BlockDeviceLink,
  type RelatedBlockDevice,
  findRelatedBlockDevices,
  findBlockDevicesOverFile,
  describeBlockDevice,
  type DeviceMount,
  findMounts,
  findMountsOfFile,
} from './system/block-device.js';
