import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, expect, test } from 'vitest';
import {
  MiB,
  attachLoop,
  backup,
  cairnOk,
  describeWithLoopDevices,
  expectCleanFsck,
  expectFilesIntact,
  init,
  lvm,
  mountDevice,
  unmount,
  makeLvmDisk,
  parseJson,
  partitionTable,
  readLvImage,
  restore,
  run,
  runCommand,
  tempDir,
  useScope,
  useSuiteScope,
  writeFileTree,
  writeJob,
  writeLvImage,
  type LvmDisk,
  type TreeFile,
} from './utils/index.js';

/*
 * LVM2 physical volumes made by pvcreate/vgcreate, LVs laid out by vgcfgrestore (there is no
 * device-mapper here), filesystems made at the LVs' offsets, the disk's free space and the
 * unallocated extents full of stale random data. Backed up in used mode: each LV's filesystem
 * mapped on its own, restored LVs check clean and hold every file, stale data is not stored,
 * and what `show` reports agrees with LVM's own tools.
 */

interface LvContent {
  tree: string;
  files: TreeFile[];
}

/** An ext4 filesystem the size of the LV, holding a file tree, written into the LV's pieces. */
async function fillExt4Lv(dir: string, disk: LvmDisk, lv: string, seed: number, dataBytes: number): Promise<LvContent> {
  const tree = join(dir, `${lv}-tree`);
  const files = await writeFileTree(tree, { seed, randomBytes: (dataBytes * 2) / 3, textBytes: dataBytes / 3 });
  const image = join(dir, `${lv}.img`);
  await run('truncate', ['-s', String(disk.lvs[lv]!.size), image]);
  await run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', '-d', tree, image]);
  await writeLvImage(disk.path, disk.lvs[lv]!, image);
  return { tree, files };
}

async function fillSwapLv(dir: string, disk: LvmDisk, lv: string): Promise<void> {
  const image = join(dir, `${lv}.img`);
  await run('truncate', ['-s', String(disk.lvs[lv]!.size), image]);
  await run('mkswap', ['-q', '-L', 'cairnswap', '-U', '2f1c1b63-3a3c-4b8e-9d51-6f3b5b0f7a11', image]);
  await writeLvImage(disk.path, disk.lvs[lv]!, image);
}

async function lvSha(disk: string, placed: LvmDisk['lvs'][string], scratch: string): Promise<string> {
  await readLvImage(disk, placed, scratch);
  return createHash('sha256').update(await readFile(scratch)).digest('hex');
}

describeWithLoopDevices('a GPT disk with two LVM partitions: linear, two-segment, striped, spanning and swap LVs', () => {
  const scope = useSuiteScope();
  let dir: string;
  let disk: LvmDisk;
  let job: string;
  let contents: Record<string, LvContent>;
  let first: Awaited<ReturnType<typeof backup>>;
  let shown: any;
  let backupWarnings: string;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-lvm-');
    disk = await makeLvmDisk(dir, 'disk', {
      size: 160 * MiB,
      table: 'gpt',
      pvSizes: [96 * MiB, 56 * MiB],
      vgName: 'cairnvg',
      metadataCopies: 2,
      lvs: [
        { name: 'root', segments: [{ pvExtent: 40, extents: 16 }, { pvExtent: 4, extents: 16 }] },
        { name: 'data', segments: [{ pvExtent: 60, extents: 24 }] },
        { name: 'swap', segments: [{ pvExtent: 84, extents: 4 }] },
        { name: 'spread', striped: { stripes: [{ pv: 0, pvExtent: 20 }, { pv: 1, pvExtent: 0 }], extentsPerStripe: 4, stripeSize: 64 * 1024 } },
        { name: 'fast', striped: { stripes: [{ pv: 1, pvExtent: 8 }, { pv: 1, pvExtent: 24 }], extentsPerStripe: 8, stripeSize: 64 * 1024 } },
      ],
    });
    contents = {
      root: await fillExt4Lv(dir, disk, 'root', 71, 12 * MiB),
      data: await fillExt4Lv(dir, disk, 'data', 72, 9 * MiB),
      fast: await fillExt4Lv(dir, disk, 'fast', 73, 6 * MiB),
    };
    await fillSwapLv(dir, disk, 'swap');
    job = await writeJob(dir, { source: disk.path, extra: { source: { type: 'volume', path: disk.path, mode: 'used' } } });
    await init(job);
    const backupRun = await cairnOk('backup', job, ['--json']);
    first = parseJson(backupRun);
    backupWarnings = backupRun.stderr;
    shown = parseJson(await cairnOk('show', job, ['latest', '--json']));
  }, 300_000);

  const lvOf = (name: string) => [...shown.layout.partitions[0].lvm.logicalVolumes, ...shown.layout.partitions[1].lvm.logicalVolumes].find((lv: any) => lv.name === name);

  test('show --json lists the VG and each LV with its filesystem, mode and reason', () => {
    const [p1, p2] = shown.layout.partitions;
    expect([p1.filesystem, p1.mode, p2.filesystem, p2.mode]).toEqual(['lvm2', 'used', 'lvm2', 'used']);
    expect(p1.lvm.vg).toMatchObject({ name: 'cairnvg', extentSize: MiB });
    expect(p1.lvm.pv).toMatchObject({ name: 'pv0', uuid: disk.pvs[0]!.uuid, peStart: disk.pvs[0]!.peStart });
    expect(p2.lvm.pv).toMatchObject({ name: 'pv1', uuid: disk.pvs[1]!.uuid, peStart: disk.pvs[1]!.peStart });
    const p1Lvs = Object.fromEntries(p1.lvm.logicalVolumes.map((lv: any) => [lv.name, lv]));
    expect([p1Lvs.root.filesystem, p1Lvs.root.mode, p1Lvs.root.size]).toEqual(['ext4', 'used', 32 * MiB]);
    expect(p1Lvs.root.segments.map((s: any) => [s.startExtent, s.extentCount, s.type, s.areas])).toEqual([
      [0, 16, 'striped', [{ pv: 'pv0', extent: 40 }]],
      [16, 16, 'striped', [{ pv: 'pv0', extent: 4 }]],
    ]);
    expect([p1Lvs.data.filesystem, p1Lvs.data.mode]).toEqual(['ext4', 'used']);
    expect(p1Lvs.spread).toMatchObject({ mode: 'exact', usedBytes: 4 * MiB });
    expect(p1Lvs.spread.note).toMatch(/spans other PVs \(pv1\); imaged exactly/);
    expect(p1Lvs.swap.filesystem).toBe('swap');
    // Swap's own mapper (header only) is another branch's; without it the LV is exact, saying why.
    if (p1Lvs.swap.mode === 'exact') expect(p1Lvs.swap.note).toMatch(/swap/);
    const p2Lvs = Object.fromEntries(p2.lvm.logicalVolumes.map((lv: any) => [lv.name, lv]));
    expect([p2Lvs.fast.filesystem, p2Lvs.fast.mode, p2Lvs.fast.segments[0].stripeSize]).toEqual(['ext4', 'used', 64 * 1024]);
    expect(p2Lvs.root).toMatchObject({ mode: 'used', usedBytes: 0, note: 'no extents on this PV' });
    for (const name of ['root', 'data']) expect(p1Lvs[name].usedBytes).toBeLessThan(p1Lvs[name].size * 0.6);
  });

  test('the backup warns of each LV imaged exactly, with the reason', () => {
    expect(backupWarnings).toContain(`warning: ${disk.path} partition 1 LV cairnvg/spread: spans other PVs (pv1); imaged exactly`);
    expect(backupWarnings).toContain(`warning: ${disk.path} partition 2 LV cairnvg/spread: spans other PVs (pv0); imaged exactly`);
    expect(backupWarnings).not.toMatch(/LV cairnvg\/(root|data|fast)/);
  });

  test('show prints the volume group and its LVs', async () => {
    const text = (await cairnOk('show', job, ['latest'])).stdout;
    expect(text).toMatch(/volume group cairnvg .*extents of 1\.0 MiB/);
    expect(text).toMatch(/root\s+32\.0 MiB\s+2\s+ext4\s+used/);
    expect(text).toMatch(/spread\s+8\.0 MiB\s+1\s+-\s+exact.*\n.*spans other PVs/);
  });

  test('agrees with pvck, pvs, vgs and lvs on the original disk', async () => {
    const devices = await Promise.all(disk.pvs.map((pv) => attachLoop(useScope(), disk.path, { readOnly: true, offset: pv.offset, sizeLimit: pv.size })));
    const headers = await lvm('pvck', devices, ['--dump', 'headers', devices[0]!]);
    expect(Number(/pv_header\.disk_locn\[0\]\.offset (\d+)/.exec(headers)![1])).toBe(shown.layout.partitions[0].lvm.pv.peStart);
    await lvm('vgck', devices, ['cairnvg']);
    const [vgName, vgUuid, extentSize, seqno] = (await lvm('vgs', devices, ['--noheadings', '--units', 'b', '--nosuffix', '-o', 'vg_name,vg_uuid,vg_extent_size,vg_seqno'])).trim().split(/\s+/);
    expect(shown.layout.partitions[0].lvm.vg).toEqual({ name: vgName, uuid: vgUuid, extentSize: Number(extentSize), seqno: Number(seqno) });
    for (const [i, device] of devices.entries()) {
      const [peStart, peCount] = (await lvm('pvs', devices, ['--noheadings', '--units', 'b', '--nosuffix', '-o', 'pe_start,pv_pe_count', device])).trim().split(/\s+/);
      expect(shown.layout.partitions[i].lvm.pv).toMatchObject({ peStart: Number(peStart), peCount: Number(peCount) });
    }
    // Each segment: name, first LV extent, extents, type, stripes, stripe size, and its PV ranges.
    const report = await lvm('lvs', devices, ['--noheadings', '--separator', ';', '--units', 'b', '--nosuffix', '-o', 'lv_name,seg_start_pe,seg_size_pe,segtype,stripes,stripe_size,seg_pe_ranges']);
    const segments = report.trim().split('\n').map((line) => line.trim().split(';'));
    expect(segments.length).toBe(6);
    for (const [name, start, count, type, stripes, stripeSize, ranges] of segments) {
      const segment = lvOf(name!).segments.find((s: any) => s.startExtent === Number(start));
      expect(segment, `${name} segment at ${start}`).toBeDefined();
      // lvs calls a one-stripe "striped" segment "linear".
      expect([segment.extentCount, segment.type, segment.areas.length, segment.stripeSize ?? 0]).toEqual([Number(count), type === 'linear' ? 'striped' : type, Number(stripes), Number(stripeSize)]);
      const perStripe = Number(count) / Number(stripes);
      const expected = segment.areas.map((a: any) => `${devices[Number(a.pv.slice(2))]}:${a.extent}-${a.extent + perStripe - 1}`).join(' ');
      expect(ranges).toBe(expected);
    }
  });

  test('stores about the used data, not the stale free space and unallocated extents', () => {
    const files = 27 * MiB;
    const exact = 8 * MiB + 4 * MiB; // the spanning LV, and swap if it has no mapper of its own
    expect(first.bytesAdded).toBeLessThan(files + exact + 16 * MiB); // metadata areas, GPT, filesystem metadata
    expect(first.bytesRead).toBeLessThan(80 * MiB); // of 160 MiB
  });

  test('the restored disk holds LVs that check clean and hold every file; exact LVs identical', async () => {
    const out = join(dir, 'restored.img');
    await restore(job, 'latest', out, { force: true });
    expect(await partitionTable(out)).toBe(await partitionTable(disk.path));
    for (const name of ['root', 'data', 'fast']) {
      const lvImage = join(dir, `restored-${name}.img`);
      await readLvImage(out, disk.lvs[name]!, lvImage);
      await expectCleanFsck(lvImage);
      await expectFilesIntact(lvImage, contents[name]!.tree, contents[name]!.files, join(dir, 'scratch'));
    }
    expect(await lvSha(out, disk.lvs['spread']!, join(dir, 'a'))).toBe(await lvSha(disk.path, disk.lvs['spread']!, join(dir, 'b')));
    const swap = join(dir, 'restored-swap.img');
    await readLvImage(out, disk.lvs['swap']!, swap);
    expect(await run('swaplabel', [swap])).toMatch(/LABEL: cairnswap\s+UUID:\s+2f1c1b63-3a3c-4b8e-9d51-6f3b5b0f7a11/);
    // The VG restored: LVM's tools read the same metadata from the restored PVs.
    const devices = await Promise.all(disk.pvs.map((pv) => attachLoop(useScope(), out, { readOnly: true, offset: pv.offset, sizeLimit: pv.size })));
    const names = (await lvm('lvs', devices, ['--noheadings', '-o', 'lv_name', 'cairnvg'])).trim().split(/\s+/);
    expect(names.sort()).toEqual(['data', 'fast', 'root', 'spread', 'swap']);
    await lvm('vgck', devices, ['cairnvg']);
  });
});

/** mkfs.xfs refuses filesystems under 300 MB unless it believes it runs under fstests. */
const MKFS_XFS_ENV = { ...process.env, TEST_DIR: '1', TEST_DEV: '1', QA_CHECK_FS: '1' };

describeWithLoopDevices('XFS in a two-segment LV and a swap LV on a GPT disk', () => {
  test('the XFS is mapped by its own used blocks, repairs clean and holds every file after a restore', async () => {
    const scope = useScope();
    const dir = await tempDir(scope, 'cairn-lvm-xfs-');
    const disk = await makeLvmDisk(dir, 'disk', {
      size: 128 * MiB,
      table: 'gpt',
      vgName: 'xfsvg',
      lvs: [
        { name: 'root', segments: [{ pvExtent: 70, extents: 40 }, { pvExtent: 2, extents: 56 }] },
        { name: 'swap', segments: [{ pvExtent: 60, extents: 8 }] },
      ],
    });
    const tree = join(dir, 'root-tree');
    const files = await writeFileTree(tree, { seed: 91, randomBytes: 10 * MiB, textBytes: 3 * MiB });
    const image = join(dir, 'root.img');
    await run('truncate', ['-s', String(disk.lvs['root']!.size), image]);
    await run('mkfs.xfs', ['-q', '-f', image], { env: MKFS_XFS_ENV });
    const mountPoint = join(dir, 'mnt');
    await mountDevice(scope, await attachLoop(scope, image), mountPoint);
    await run('cp', ['-a', `${tree}/.`, mountPoint]);
    await unmount(mountPoint);
    await writeLvImage(disk.path, disk.lvs['root']!, image);
    await fillSwapLv(dir, disk, 'swap');

    const job = await writeJob(dir, { source: disk.path, extra: { source: { type: 'volume', path: disk.path, mode: 'used' } } });
    await init(job);
    const done = await backup(job);
    const lvs = parseJson(await cairnOk('show', job, ['latest', '--json'])).layout.partitions[0].lvm.logicalVolumes;
    const root = lvs.find((lv: any) => lv.name === 'root');
    expect([root.filesystem, root.mode, root.size]).toEqual(['xfs', 'used', 96 * MiB]);
    expect(root.usedBytes).toBeLessThan(13 * MiB + 8 * MiB); // the files, the log and the AG headers
    const swap = lvs.find((lv: any) => lv.name === 'swap');
    expect([swap.filesystem, swap.mode]).toEqual(['swap', 'used']);
    expect(swap.usedBytes).toBeLessThanOrEqual(64 * 1024);
    expect(done.bytesRead).toBeLessThan(13 * MiB + 12 * MiB); // of 128 MiB: stale free extents and XFS free space not read

    const out = join(dir, 'restored.img');
    await restore(job, 'latest', out, { force: true });
    const restoredRoot = join(dir, 'restored-root.img');
    await readLvImage(out, disk.lvs['root']!, restoredRoot);
    const repair = await runCommand('xfs_repair', ['-n', '-f', restoredRoot]);
    expect(repair.exitCode, repair.stdout + repair.stderr).toBe(0);
    const restoredMount = join(dir, 'restored-mnt');
    await mountDevice(scope, await attachLoop(scope, restoredRoot, { readOnly: true }), restoredMount, ['ro', 'norecovery']);
    for (const file of files) expect(await sha(join(restoredMount, file.path)), file.path).toBe(await sha(join(tree, file.path)));
    const restoredSwap = join(dir, 'restored-swap.img');
    await readLvImage(out, disk.lvs['swap']!, restoredSwap);
    expect(await run('swaplabel', [restoredSwap])).toMatch(/LABEL: cairnswap\s+UUID:\s+2f1c1b63-3a3c-4b8e-9d51-6f3b5b0f7a11/);
  });
});

async function sha(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

describeWithLoopDevices('a bare PV (no partition table) with a two-segment ext4 LV', () => {
  test('round-trips in used mode; unallocated extents are not stored', async () => {
    const scope = useScope();
    const dir = await tempDir(scope, 'cairn-lvm-bare-');
    const disk = await makeLvmDisk(dir, 'pv', {
      size: 96 * MiB,
      table: 'none',
      vgName: 'barevg',
      extentSize: 4 * MiB,
      lvs: [{ name: 'home', segments: [{ pvExtent: 10, extents: 4 }, { pvExtent: 2, extents: 3 }] }],
    });
    const home = await fillExt4Lv(dir, disk, 'home', 81, 8 * MiB);
    const job = await writeJob(dir, { source: disk.path, extra: { source: { type: 'volume', path: disk.path, mode: 'used' } } });
    await init(job);
    const done = await backup(job);
    const layout = parseJson(await cairnOk('show', job, ['latest', '--json'])).layout;
    expect([layout.partitionTable.type, layout.filesystem, layout.mode]).toEqual(['none', 'lvm2', 'used']);
    expect(layout.lvm.logicalVolumes.map((lv: any) => [lv.name, lv.filesystem, lv.mode, lv.size])).toEqual([['home', 'ext4', 'used', 28 * MiB]]);
    expect(done.bytesRead).toBeLessThan(8 * MiB + 8 * MiB);
    const out = join(dir, 'restored.img');
    await restore(job, 'latest', out, { force: true });
    const lvImage = join(dir, 'restored-home.img');
    await readLvImage(out, disk.lvs['home']!, lvImage);
    await expectCleanFsck(lvImage);
    await expectFilesIntact(lvImage, home.tree, home.files, join(dir, 'scratch'));
  });
});
