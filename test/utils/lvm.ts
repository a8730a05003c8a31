import { randomBytes } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FIRST_PARTITION_SECTOR, SECTOR, fillWithStaleData, zeroFile } from './disk.js';
import { run } from './exec.js';
import { attachLoop } from './loop.js';
import { Scope } from './scope.js';
import { MiB } from './volume.js';

/*
 * LVM2 disks laid out with the real tools but without device-mapper (this machine has none):
 * pvcreate and vgcreate on loop devices over the PV's region, the logical volumes written
 * into the VG's metadata with `vgcfgrestore --force`, which activates nothing. What goes into
 * an LV is then written at its PV offsets (writeLvImage); readLvImage reads it back.
 */

/** One linear run of an LV: `extents` extents from physical extent `pvExtent` of PV `pv` (0-based). */
export interface LvRun {
  pv?: number;
  pvExtent: number;
  extents: number;
}

export interface LvSpec {
  name: string;
  /** Linear segments, in the LV's order. */
  segments?: LvRun[];
  /** Or one striped segment: `stripes[i]` holds `extentsPerStripe` extents; stripeSize in bytes. */
  striped?: { stripes: Array<{ pv?: number; pvExtent: number }>; extentsPerStripe: number; stripeSize: number };
}

export interface LvmDiskSpec {
  /** Bytes of the whole image. */
  size: number;
  /** A GPT with one LVM partition per PV (type 8e00), or one bare PV filling the image. */
  table: 'gpt' | 'none';
  /** Bytes of each PV's partition (GPT only); default: one PV filling the disk. */
  pvSizes?: number[];
  vgName: string;
  /** Bytes; default 1 MiB. */
  extentSize?: number;
  /** pvcreate --pvmetadatacopies (1, or 2 for a second area at the PV's end). */
  metadataCopies?: 1 | 2;
  lvs: LvSpec[];
  /** Further sections for `logical_volumes` as LVM text (snapshots, thin pools: what vgcfgrestore accepts). */
  extraLvText?: string;
  fill?: 'stale' | 'zeros';
}

/** A contiguous piece of an LV on the disk image. */
export interface LvPiece {
  lvOffset: number;
  diskOffset: number;
  length: number;
}

export interface PlacedLv {
  name: string;
  size: number;
  pieces: LvPiece[];
}

export interface PlacedPv {
  /** Byte offset of the PV (its partition) in the disk image, and its size. */
  offset: number;
  size: number;
  /** Where the PV's first extent starts, relative to the PV. */
  peStart: number;
  uuid: string;
}

export interface LvmDisk {
  path: string;
  vgName: string;
  extentSize: number;
  pvs: PlacedPv[];
  lvs: Record<string, PlacedLv>;
  /** The metadata text given to vgcfgrestore. */
  metadataFile: string;
}

/** Arguments that make an LVM command see only `devices` and write nothing under /etc. */
export function lvmConfig(devices: readonly string[]): string[] {
  const accept = devices.map((d) => `"a|^${d}$|"`).join(', ');
  return ['--config', `devices { use_devicesfile = 0 filter = [ ${accept}, "r|.*|" ] hints = "none" } backup { backup = 0 archive = 0 }`];
}

/** Runs an LVM command with `lvmConfig`, its file-descriptor warnings silenced. */
export function lvm(command: string, devices: readonly string[], args: readonly string[]): Promise<string> {
  return run(command, [...lvmConfig(devices), ...args], { env: { ...process.env, LVM_SUPPRESS_FD_WARNINGS: '1' } });
}

function lvmUuid(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const chars = Array.from(randomBytes(32), (b) => alphabet[b % alphabet.length]).join('');
  return [6, 4, 4, 4, 4, 4, 6].reduce<{ at: number; parts: string[] }>((acc, n) => ({ at: acc.at + n, parts: [...acc.parts, chars.slice(acc.at, acc.at + n)] }), { at: 0, parts: [] }).parts.join('-');
}

function segmentText(index: number, startExtent: number, extentCount: number, stripes: Array<{ pv?: number; pvExtent: number }>, stripeSize: number): string {
  const list = stripes.map((s) => `"pv${s.pv ?? 0}", ${s.pvExtent}`).join(', ');
  return [
    `\t\t\tsegment${index} {`,
    `\t\t\t\tstart_extent = ${startExtent}`,
    `\t\t\t\textent_count = ${extentCount}`,
    `\t\t\t\ttype = "striped"`,
    `\t\t\t\tstripe_count = ${stripes.length}`,
    ...(stripes.length > 1 ? [`\t\t\t\tstripe_size = ${stripeSize / SECTOR}`] : []),
    `\t\t\t\tstripes = [${list}]`,
    `\t\t\t}`,
  ].join('\n');
}

/** The `logical_volumes` section for `lvs`. */
export function logicalVolumesText(lvs: readonly LvSpec[], extra = ''): string {
  const sections = lvs.map((lv) => {
    const segments = lv.striped
      ? [segmentText(1, 0, lv.striped.extentsPerStripe * lv.striped.stripes.length, lv.striped.stripes, lv.striped.stripeSize)]
      : (lv.segments ?? []).map((run, i, all) => segmentText(i + 1, all.slice(0, i).reduce((n, r) => n + r.extents, 0), run.extents, [run], 0));
    return [`\t\t${lv.name} {`, `\t\t\tid = "${lvmUuid()}"`, `\t\t\tstatus = ["READ", "WRITE", "VISIBLE"]`, `\t\t\tflags = []`, `\t\t\tsegment_count = ${segments.length}`, ...segments, `\t\t}`].join('\n');
  });
  return `\tlogical_volumes {\n${sections.join('\n')}\n${extra}\n\t}\n`;
}

/** Where each LV's bytes lie on the disk image. */
function placeLv(lv: LvSpec, pvs: readonly PlacedPv[], extentSize: number): PlacedLv {
  const at = (pv: number | undefined, extent: number) => pvs[pv ?? 0]!.offset + pvs[pv ?? 0]!.peStart + extent * extentSize;
  const pieces: LvPiece[] = [];
  if (lv.striped) {
    const { stripes, extentsPerStripe, stripeSize } = lv.striped;
    const rows = (extentsPerStripe * extentSize) / stripeSize;
    for (let row = 0; row < rows; row++) {
      stripes.forEach((s, i) => pieces.push({ lvOffset: (row * stripes.length + i) * stripeSize, diskOffset: at(s.pv, s.pvExtent) + row * stripeSize, length: stripeSize }));
    }
  } else {
    let lvOffset = 0;
    for (const run of lv.segments ?? []) {
      pieces.push({ lvOffset, diskOffset: at(run.pv, run.pvExtent), length: run.extents * extentSize });
      lvOffset += run.extents * extentSize;
    }
  }
  return { name: lv.name, size: pieces.reduce((n, p) => n + p.length, 0), pieces };
}

/** Writes the GPT (one 8e00 partition per PV from 1 MiB on) and returns the PVs' regions. */
async function writeTable(spec: LvmDiskSpec, path: string): Promise<Array<{ offset: number; size: number }>> {
  if (spec.table === 'none') return [{ offset: 0, size: spec.size }];
  const sizes = spec.pvSizes ?? [spec.size - 2 * MiB];
  const args: string[] = [];
  const regions: Array<{ offset: number; size: number }> = [];
  let sector = FIRST_PARTITION_SECTOR;
  sizes.forEach((size, i) => {
    args.push('-n', `${i + 1}:${sector}:${sector + size / SECTOR - 1}`, '-t', `${i + 1}:8e00`, '-c', `${i + 1}:lvm${i + 1}`);
    regions.push({ offset: sector * SECTOR, size });
    sector += size / SECTOR;
  });
  await run('sgdisk', ['-Z', path]);
  await run('sgdisk', [...args, path]);
  return regions;
}

/**
 * Builds a disk image holding a volume group with the given LVs (nothing written into them
 * yet: they hold the stale fill) and returns where everything lies. Loop devices it attaches
 * are detached before it returns, also when it fails.
 */
export async function makeLvmDisk(dir: string, name: string, spec: LvmDiskSpec): Promise<LvmDisk> {
  const path = join(dir, `${name}.img`);
  if (spec.fill === 'zeros') await zeroFile(path, spec.size);
  else await fillWithStaleData(path, spec.size);
  const regions = await writeTable(spec, path);
  const extentSize = spec.extentSize ?? MiB;
  const scope = new Scope();
  try {
    const devices: string[] = [];
    for (const region of regions) devices.push(await attachLoop(scope, path, { offset: region.offset, sizeLimit: region.size }));
    for (const device of devices) await lvm('pvcreate', devices, ['-q', '-ff', '-y', '--pvmetadatacopies', String(spec.metadataCopies ?? 1), device]);
    await lvm('vgcreate', devices, ['-q', '-s', `${extentSize / 1024}k`, spec.vgName, ...devices]);
    const base = join(dir, `${name}-base.txt`);
    await lvm('vgcfgbackup', devices, ['-q', '-f', base, spec.vgName]);
    const metadataFile = join(dir, `${name}-lvs.txt`);
    const text = await readFile(base, 'utf8');
    const end = text.lastIndexOf('}');
    await writeFile(metadataFile, text.slice(0, end) + logicalVolumesText(spec.lvs, spec.extraLvText) + text.slice(end));
    // Without device-mapper it warns that it cannot check for active LVs, and restores.
    await lvm('vgcfgrestore', devices, ['-q', '--force', '-f', metadataFile, spec.vgName]);
    const pvs = await Promise.all(devices.map(async (device, i) => ({ ...regions[i]!, ...(await pvFacts(devices, device)) })));
    const lvs = Object.fromEntries(spec.lvs.map((lv) => [lv.name, placeLv(lv, pvs, extentSize)]));
    return { path, vgName: spec.vgName, extentSize, pvs, lvs, metadataFile };
  } finally {
    await scope.dispose();
  }
}

async function pvFacts(devices: readonly string[], device: string): Promise<{ peStart: number; uuid: string }> {
  const [peStart, uuid] = (await lvm('pvs', devices, ['--noheadings', '--units', 'b', '--nosuffix', '-o', 'pe_start,pv_uuid', device])).trim().split(/\s+/);
  return { peStart: Number(peStart), uuid: uuid!.replaceAll('-', '') };
}

/** Copies a filesystem image made for the LV into its pieces on the disk. */
export async function writeLvImage(disk: string, lv: PlacedLv, image: string): Promise<void> {
  const source = await open(image, 'r');
  const target = await open(disk, 'r+');
  try {
    for (const piece of lv.pieces) {
      const buffer = Buffer.alloc(piece.length);
      const { bytesRead } = await source.read(buffer, 0, piece.length, piece.lvOffset);
      await target.write(buffer, 0, bytesRead, piece.diskOffset);
    }
  } finally {
    await source.close();
    await target.close();
  }
}

/** Reads an LV out of a disk image (the original or a restored one) into a file of its own. */
export async function readLvImage(disk: string, lv: PlacedLv, to: string): Promise<void> {
  const source = await open(disk, 'r');
  const target = await open(to, 'w');
  try {
    for (const piece of lv.pieces) {
      const buffer = Buffer.alloc(piece.length);
      await source.read(buffer, 0, piece.length, piece.diskOffset);
      await target.write(buffer, 0, piece.length, piece.lvOffset);
    }
  } finally {
    await source.close();
    await target.close();
  }
}
