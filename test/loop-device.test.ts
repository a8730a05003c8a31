import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  attachLoop,
  backup,
  copySparse,
  describeWithLoopDevices,
  expectCleanFsck,
  expectCleanFailure,
  expectSuccess,
  flushDevice,
  init,
  makeVolume,
  mountDevice,
  randomBytesFor,
  restore,
  runCli,
  sameBytes,
  sha256Of,
  sizeOf,
  snapshots,
  tempDir,
  useScope,
  useSuiteScope,
  writeJob,
  type BackupSummary,
} from './utils/index.js';

/** A file of `size` bytes filled with a recognizable non-zero pattern. */
async function patternFile(path: string, size: number, seed: string): Promise<Buffer> {
  const head = randomBytesFor(seed, 1 * MiB);
  const handle = await open(path, 'w');
  try {
    for (let offset = 0; offset < size; offset += head.length) await handle.write(head, 0, Math.min(head.length, size - offset), offset);
  } finally {
    await handle.close();
  }
  return head;
}

async function readHead(path: string, length: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, 0);
    return buffer;
  } finally {
    await handle.close();
  }
}

describeWithLoopDevices('loop block devices', () => {
  const scope = useSuiteScope();
  const imageSize = 64 * MiB;
  let dir: string;
  let image: string;
  let sourceDevice: string;
  let job: string;
  let snapshotId: string;
  let sourceBackup: BackupSummary;

  beforeAll(async () => {
    dir = await tempDir(scope);
    ({ image } = await makeVolume(dir, 'disk', imageSize, { seed: 11, randomBytes: 4 * MiB, textBytes: 2 * MiB, zeroBytes: 1 * MiB }));
    sourceDevice = await attachLoop(scope, image, { readOnly: true });
    job = await writeJob(dir, { source: sourceDevice });
    await init(job);
    sourceBackup = await backup(job);
    snapshotId = sourceBackup.snapshot;
  });

  test('a loop device is backed up and restores byte-identical to a file', async () => {
    expect(await sizeOf(sourceDevice)).toBe(imageSize);
    expect(sourceBackup.bytesRead).toBe(imageSize); // the size comes from the device itself
    const [row] = await snapshots(job);
    expect(row!.id).toBe(snapshotId);
    expect(row!.source.path).toBe(sourceDevice);
    expect((row!.layout as { kind: string }).kind).toBe('block-device');

    const restored = join(dir, 'from-device.img');
    await restore(job, snapshotId, restored);
    expect(await sameBytes(image, restored)).toBe(true);
  });

  test('restore onto a larger loop device: refused without --force, then byte-identical and clean', async () => {
    const scope = useScope();
    // Larger than the image, and full of non-zero bytes: the restore must write the
    // image's zeros too, since a device keeps whatever it held where nothing is written.
    const backing = join(dir, 'target-large.bin');
    const pattern = await patternFile(backing, 80 * MiB, 'large-target');
    const device = await attachLoop(scope, backing);
    expect(await sizeOf(device)).toBe(80 * MiB);

    const refused = await runCli(['restore', job, snapshotId, '--to', device], { env: PASSWORD_ENV });
    expectCleanFailure(refused, 1, /--force/, new RegExp(device));
    expect((await readHead(device, 4096)).equals(pattern.subarray(0, 4096)), 'untouched without --force').toBe(true);

    const forced = await runCli(['restore', job, snapshotId, '--to', device, '--force'], { env: PASSWORD_ENV });
    expectSuccess(forced);
    await flushDevice(device);
    expect(await sameBytes(image, device, imageSize)).toBe(true);
    await expectCleanFsck(device);
  });

  test('restore onto a loop device of exactly the image size', async () => {
    const scope = useScope();
    const backing = join(dir, 'target-equal.bin');
    await patternFile(backing, imageSize, 'equal-target');
    const device = await attachLoop(scope, backing);
    await restore(job, 'latest', device, { force: true });
    await flushDevice(device);
    expect(await sameBytes(image, device)).toBe(true);
    await expectCleanFsck(device);
  });

  interface Refusal {
    /** Size of the destination device. */
    size: number;
    force: boolean;
    /** Mount the device (read-only, so nothing but cairn could write to it) before the restore. */
    mounted: boolean;
    /** Default 1. */
    exitCode?: number;
    message: (device: string, mountPoint: string) => RegExp[];
  }
  const refusals: Array<[string, Refusal]> = [
    // A smaller device is shrunk onto (restore --shrink) when the data fits; this one is too small for it (exit 2).
    ['too small for the data', { size: 4 * MiB, force: true, mounted: false, exitCode: 2, message: () => [/too small for the snapshot's disk/, /needs at least \d+ bytes/, /nothing was written/] }],
    ['given without --force', { size: 80 * MiB, force: false, mounted: false, message: (device) => [/--force/, new RegExp(device)] }],
    ['mounted (read-only)', { size: imageSize, force: true, mounted: true, message: (device, mountPoint) => [/is mounted at/, new RegExp(device), new RegExp(mountPoint), /unmount/] }],
  ];

  test.each(refusals)('a device %s is refused and left untouched, every byte', async (name, refusal) => {
    const scope = useScope();
    const slug = name.replace(/\W+/g, '-');
    const backing = join(dir, `refused-${slug}.bin`);
    if (refusal.mounted) await copySparse(image, backing);
    else await patternFile(backing, refusal.size, `refused-${name}`);
    const device = await attachLoop(scope, backing);
    const mountPoint = join(dir, `refused-mnt-${slug}`);
    if (refusal.mounted) await mountDevice(scope, device, mountPoint, ['ro']);
    const before = { device: await sha256Of(device), backing: await sha256Of(backing) };

    const result = await runCli(['restore', job, 'latest', '--to', device, ...(refusal.force ? ['--force'] : [])], { env: PASSWORD_ENV });
    expectCleanFailure(result, refusal.exitCode ?? 1, ...refusal.message(device, mountPoint));
    expect(result.stdout).toBe('');
    await flushDevice(device);
    expect({ device: await sha256Of(device), backing: await sha256Of(backing) }).toEqual(before);
  });

  test('restore onto a device mounted read-write is refused', async () => {
    const scope = useScope();
    const copy = join(dir, 'mounted.img');
    await writeFile(copy, await readHead(image, imageSize));
    const device = await attachLoop(scope, copy);
    const mountPoint = join(dir, 'mnt');
    await mountDevice(scope, device, mountPoint);
    await writeFile(join(mountPoint, 'written-while-mounted.txt'), 'still here\n');

    const result = await runCli(['restore', job, 'latest', '--to', device, '--force'], { env: PASSWORD_ENV });
    expectCleanFailure(result, 1, /is mounted at/, new RegExp(mountPoint), /unmount/);
  });

  test('backing up a device mounted read-write warns that the image may be inconsistent', async () => {
    const scope = useScope();
    const copy = join(dir, 'busy.img');
    await writeFile(copy, await readHead(image, imageSize));
    const device = await attachLoop(scope, copy);
    const mountPoint = join(dir, 'busy-mnt');
    await mountDevice(scope, device, mountPoint);
    const busyJob = await writeJob(dir, { source: device }, 'busy-job.json');

    const result = await runCli(['backup', busyJob, '--json'], { env: PASSWORD_ENV });
    expectSuccess(result);
    expect(result.stderr).toMatch(/warning: .*mounted read-write/);
    expect(result.stderr).toContain(mountPoint);
  });
});
