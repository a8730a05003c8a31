/*
 * Block devices as Linux describes them outside of Node's reach: device numbers, geometry
 * and names from sysfs, mounts from /proc/self/mountinfo, and what is built on a device
 * (partitions, device-mapper and md holders, loop devices). The volume source uses it to
 * warn about mounted sources; restore uses it to refuse a destination that is in use.
 * Files: device-number.ts, sysfs.ts, loop-devices.ts, mountinfo.ts, related-devices.ts,
 * mounts.ts.
 */
export { type DeviceNumber, splitDeviceNumber, formatDeviceNumber, parseDeviceNumber, sameDeviceNumber } from './device-number.js';
export { type BlockDeviceGeometry, readBlockDeviceGeometry, deviceNodePath, deviceLabel } from './sysfs.js';
export { type LoopBacking, type LoopDevice, listLoopDevices, findLoopDevicesBackedBy, loopRangesOverlap } from './loop-devices.js';
export { type MountInfoEntry, parseMountInfo } from './mountinfo.js';
export {
  type BlockDeviceLink,
  type RelatedBlockDevice,
  findRelatedBlockDevices,
  findBlockDevicesOverFile,
  describeBlockDevice,
} from './related-devices.js';
export { type DeviceMount, findMounts, findMountsOfFile } from './mounts.js';
