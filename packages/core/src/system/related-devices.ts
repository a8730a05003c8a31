import type { BigIntStats } from 'node:fs';
import { type DeviceNumber, formatDeviceNumber, sameDeviceNumber } from './device-number.js';
import { type LoopDevice, findLoopDevicesBackedBy, listLoopDevices, loopRangesOverlap, sameBacking } from './loop-devices.js';
import { deviceLabel, readHolders, readPartitions } from './sysfs.js';

/** How a block device is built on another one, which exposes (some of) the same bytes. */
export type BlockDeviceLink =
  /** A partition of `parent` (sda1 of sda). */
  | { kind: 'partition'; parent: RelatedBlockDevice; number: number }
  /** A device the kernel lists in `parent`'s `holders`: device-mapper, md RAID. */
  | { kind: 'holder'; parent: RelatedBlockDevice }
  /** A loop device whose backing file is the block device `parent`. */
  | { kind: 'loop'; parent: RelatedBlockDevice; offset: number; sizeLimit: number }
  /** A loop device over the same backing file as the loop device `parent`, sharing some of its bytes. */
  | { kind: 'overlapping-loop'; parent: RelatedBlockDevice; backingFile: string; offset: number; sizeLimit: number }
  /** A loop device over the image file asked about (findBlockDevicesOverFile). */
  | { kind: 'file-loop'; backingFile: string; offset: number; sizeLimit: number };

/** A block device that exposes bytes of the device (or file) asked about. */
export interface RelatedBlockDevice {
  device: DeviceNumber;
  /** `/dev/...` path of the device, or `major:minor` when the kernel gives it no name. */
  devicePath: string;
  /** How it is built on what was asked about; absent for the device asked about itself. */
  via?: BlockDeviceLink;
}

/**
 * The device itself and every block device built on it, recursively: its partitions, its
 * holders (device-mapper, md), loop devices whose backing file is it (matched on the
 * backing device's number, not on a path), and, when the device is itself a loop device,
 * the other loop devices over the same backing file whose byte ranges overlap its own.
 * Writing to the device changes what every one of them reads, and mounting any of them
 * writes to the device's bytes.
 */
export async function findRelatedBlockDevices(device: DeviceNumber): Promise<RelatedBlockDevice[]> {
  const loops = await listLoopDevices();
  const self: RelatedBlockDevice = { device, devicePath: await deviceLabel(device) };
  return walkBuiltOn([self, ...overlappingLoops(self, loops)], loops);
}

/** The loop devices over the (regular) file `file`, and every block device built on them. */
export async function findBlockDevicesOverFile(file: BigIntStats): Promise<RelatedBlockDevice[]> {
  const roots = (await findLoopDevicesBackedBy(file)).map((loop): RelatedBlockDevice => ({
    device: loop.device,
    devicePath: loop.devicePath,
    via: { kind: 'file-loop', backingFile: loop.backingFile, offset: loop.offset, sizeLimit: loop.sizeLimit },
  }));
  return walkBuiltOn(roots, await listLoopDevices());
}

/**
 * A device and how it is built on the one asked about, for messages:
 * `/dev/loop9 (on /dev/loop8, which is on /dev/loop7 at offset 1048576)`.
 */
export function describeBlockDevice(related: RelatedBlockDevice): string {
  return related.via ? `${related.devicePath} (${describeLink(related.via)})` : related.devicePath;
}

function describeLink(link: BlockDeviceLink): string {
  const atOffset = 'offset' in link && link.offset > 0 ? ` at offset ${link.offset}` : '';
  let text: string;
  switch (link.kind) {
    case 'partition':
      text = `partition ${link.number} of ${link.parent.devicePath}`;
      break;
    case 'holder':
      text = `built on ${link.parent.devicePath}`;
      break;
    case 'loop':
      text = `on ${link.parent.devicePath}${atOffset}`;
      break;
    case 'overlapping-loop':
      text = `over ${link.backingFile}${atOffset}, overlapping ${link.parent.devicePath}`;
      break;
    case 'file-loop':
      return `over ${link.backingFile}${atOffset}`;
  }
  return link.parent.via ? `${text}, which is ${describeLink(link.parent.via)}` : text;
}

function overlappingLoops(self: RelatedBlockDevice, loops: LoopDevice[]): RelatedBlockDevice[] {
  const own = loops.find((loop) => sameDeviceNumber(loop.device, self.device));
  if (!own) return [];
  return loops
    .filter((other) => other !== own && sameBacking(other.backing, own.backing) && loopRangesOverlap(own, other))
    .map((other) => ({
      device: other.device,
      devicePath: other.devicePath,
      via: { kind: 'overlapping-loop', parent: self, backingFile: other.backingFile, offset: other.offset, sizeLimit: other.sizeLimit },
    }));
}

/** Breadth first, so that each device is reached through its shortest chain. */
async function walkBuiltOn(roots: RelatedBlockDevice[], loops: LoopDevice[]): Promise<RelatedBlockDevice[]> {
  const found = new Map<string, RelatedBlockDevice>();
  const queue = [...roots];
  for (let current = queue.shift(); current !== undefined; current = queue.shift()) {
    const key = formatDeviceNumber(current.device);
    if (found.has(key)) continue;
    found.set(key, current);
    queue.push(...(await devicesBuiltOn(current, loops)));
  }
  return [...found.values()];
}

async function devicesBuiltOn(parent: RelatedBlockDevice, loops: LoopDevice[]): Promise<RelatedBlockDevice[]> {
  const built: RelatedBlockDevice[] = [];
  for (const { device, number } of await readPartitions(parent.device)) {
    built.push({ device, devicePath: await deviceLabel(device), via: { kind: 'partition', parent, number } });
  }
  for (const device of await readHolders(parent.device)) {
    built.push({ device, devicePath: await deviceLabel(device), via: { kind: 'holder', parent } });
  }
  for (const loop of loops) {
    if (loop.backing?.kind !== 'block-device' || !sameDeviceNumber(loop.backing.device, parent.device)) continue;
    built.push({ device: loop.device, devicePath: loop.devicePath, via: { kind: 'loop', parent, offset: loop.offset, sizeLimit: loop.sizeLimit } });
  }
  return built;
}
