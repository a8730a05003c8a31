import { type DeviceNumber, parseDeviceNumber } from './device-number.js';

/** One line of `/proc/<pid>/mountinfo` (see proc(5)). */
export interface MountInfoEntry {
  /** Field 3: the device the mounted filesystem reports (`0:N` for btrfs, FUSE and virtual filesystems). */
  device: DeviceNumber;
  mountPoint: string;
  /** Per-mount options (field 6), e.g. `rw`, `relatime`. */
  mountOptions: string[];
  fsType: string;
  /** Mount source as given to mount(8), e.g. `/dev/loop3`. */
  source: string;
  /** Per-superblock options. */
  superOptions: string[];
}

/** mountinfo writes space, tab, newline and backslash as octal escapes (`\040`). */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/**
 * Parses mountinfo text. The optional fields between field 6 and the `-` separator vary in
 * number, so the fields after them are found from the separator. Lines that do not have
 * this shape are skipped.
 */
export function parseMountInfo(text: string): MountInfoEntry[] {
  const entries: MountInfoEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const separator = fields.indexOf('-', 6);
    const device = parseDeviceNumber(fields[2] ?? '');
    if (separator < 0 || !device || fields.length < separator + 4) continue;
    entries.push({
      device,
      mountPoint: unescapeMountField(fields[4]!),
      mountOptions: fields[5]!.split(','),
      fsType: fields[separator + 1]!,
      source: unescapeMountField(fields[separator + 2]!),
      superOptions: fields[separator + 3]!.split(','),
    });
  }
  return entries;
}
