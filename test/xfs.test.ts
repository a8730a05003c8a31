// XFS through the real CLI: a filesystem made by mkfs.xfs over stale random bytes, files written
// through a loop mount, backed up in used mode, restored, checked by xfs_repair and mounted
// read-only to compare every file; the same filesystem imaged by partclone.xfs for reference;
// and a filesystem whose log is dirty, which is imaged exactly with the reason.
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, expect, test } from 'vitest';
import {
  MiB,
  attachLoop,
  backup,
  cairnOk,
  describeWithLoopDevices,
  fillWithStaleData,
  init,
  mountDevice,
  parseJson,
  restore,
  run,
  runCommand,
  sameBytes,
  tempDir,
  unmount,
  useScope,
  useSuiteScope,
  writeFileTree,
  writeJob,
  type BackupSummary,
  type Scope,
  type TreeFile,
} from './utils/index.js';

const SIZE = 96 * MiB;
/** Imaged exactly, so kept small: every byte is read and compressed. */
const DIRTY_SIZE = 32 * MiB;
/** mkfs.xfs refuses filesystems under 300 MB unless it believes it runs under fstests. */
const MKFS_ENV = { ...process.env, TEST_DIR: '1', TEST_DEV: '1', QA_CHECK_FS: '1' };
const TREE = { seed: 17, randomBytes: 12 * MiB, textBytes: 3 * MiB, zeroBytes: 1 * MiB, filesPerKind: 8 };

/** An XFS image over stale bytes, with a file tree copied in through a loop mount and unmounted again. */
async function makeXfs(scope: Scope, dir: string, name: string, mkfsArgs: string[] = []): Promise<{ image: string; tree: string; files: TreeFile[] }> {
  const tree = join(dir, `${name}-tree`);
  const files = await writeFileTree(tree, TREE);
  const image = join(dir, `${name}.img`);
  await fillWithStaleData(image, SIZE);
  await run('mkfs.xfs', ['-q', '-f', ...mkfsArgs, image], { env: MKFS_ENV });
  const mountPoint = join(dir, `${name}-mnt`);
  await mountDevice(scope, await attachLoop(scope, image), mountPoint);
  await run('cp', ['-a', `${tree}/.`, mountPoint]);
  await unmount(mountPoint);
  return { image, tree, files };
}

/**
 * Blocks in use by the AGFs' account: all but their free blocks (agf_freeblks, the bnobt's sum);
 * and the AGFL's blocks, which that account includes but xfs_db and partclone take for free.
 */
async function xfsDbCounts(image: string): Promise<{ blockSize: number; usedBlocks: number; agflBlocks: number }> {
  const sb = await run('xfs_db', ['-r', '-c', 'sb 0', '-c', 'p blocksize dblocks agcount', image]);
  const field = (text: string, name: string) => Number(new RegExp(`^${name} = (\\d+)$`, 'm').exec(text)![1]);
  let free = 0;
  let agfl = 0;
  for (let ag = 0; ag < field(sb, 'agcount'); ag++) {
    const agf = await run('xfs_db', ['-r', '-c', `agf ${ag}`, '-c', 'p freeblks flcount', image]);
    free += field(agf, 'freeblks');
    agfl += field(agf, 'flcount');
  }
  return { blockSize: field(sb, 'blocksize'), usedBlocks: field(sb, 'dblocks') - free, agflBlocks: agfl };
}

async function expectCleanXfsRepair(image: string): Promise<void> {
  const result = await runCommand('xfs_repair', ['-n', '-f', image]);
  expect(result.exitCode, `${result.stdout}${result.stderr}`).toBe(0);
}

/** Mounts `image` read-only and compares every file of the tree with the original, byte for byte. */
async function expectFilesIdentical(dir: string, image: string, tree: string, files: readonly TreeFile[]): Promise<void> {
  const scope = useScope();
  const mountPoint = join(dir, 'check-mnt');
  await mountDevice(scope, await attachLoop(scope, image, { readOnly: true }), mountPoint, ['ro']);
  for (const file of [...files, { path: 'etc/hostname' }]) {
    expect(await sameBytes(join(mountPoint, file.path), join(tree, file.path)), file.path).toBe(true);
  }
  expect(await run('readlink', [join(mountPoint, 'hostname-link')])).toBe('etc/hostname\n');
}

describeWithLoopDevices('XFS in used mode through the CLI', () => {
  const scope = useSuiteScope();
  let dir: string;
  let xfs: { image: string; tree: string; files: TreeFile[] };
  let job: string;
  let result: BackupSummary;
  let restored: string;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-xfs-e2e-');
    xfs = await makeXfs(scope, dir, 'xfs', ['-d', 'agcount=4']);
    job = await writeJob(dir, { source: xfs.image, extra: { source: { type: 'volume', path: xfs.image, mode: 'used' } } });
    await init(job);
    result = await backup(job);
    restored = join(dir, 'restored.img');
    await restore(job, 'latest', restored);
  }, 300_000);

  test('reads exactly the blocks in use (xfs_db: all but the free blocks the AGFs count) and stores about the data', async () => {
    const shown = parseJson(await cairnOk('show', job, ['latest', '--json']));
    expect([shown.layout.mode, shown.layout.filesystem, shown.layout.note]).toEqual(['used', 'xfs', undefined]);
    const { blockSize, usedBlocks } = await xfsDbCounts(xfs.image);
    expect(result.bytesRead).toBe(usedBlocks * blockSize);
    // The files (16 MiB, the random 12 MiB incompressible) plus metadata and the log; the 80 MiB of stale free space stays out.
    expect(result.bytesAdded).toBeGreaterThan(TREE.randomBytes);
    expect(result.bytesAdded).toBeLessThan(TREE.randomBytes + 4 * MiB);
    expect(result.size).toBe(SIZE);
  });

  test('the restored image passes xfs_repair -n and holds every file, byte for byte', async () => {
    await expectCleanXfsRepair(restored);
    await expectFilesIdentical(dir, restored, xfs.tree, xfs.files);
  });

  test("partclone.xfs's used-block restore equals cairn's, which adds only the AGFL blocks", async () => {
    // partclone writes only the blocks it takes for used. Restored onto a file filled with a
    // marker byte, the blocks it wrote are those no longer all-marker; each must equal cairn's
    // restore there. Every other block cairn restored non-zero must be one of the AGFL's (free
    // to partclone and xfs_db, outside the bnobt for cairn), and cairn wrote zeros everywhere
    // else, where the source held stale random bytes.
    const image = join(dir, 'partclone.pc');
    await run('partclone.xfs', ['-c', '-s', xfs.image, '-o', image, '-L', join(dir, 'partclone-c.log')]);
    const target = join(dir, 'partclone-restored.img');
    await writeMarkerFile(target, SIZE, 0xee);
    await run('partclone.restore', ['-s', image, '-O', target, '-L', join(dir, 'partclone-r.log')]);
    const { blockSize, usedBlocks, agflBlocks } = await xfsDbCounts(xfs.image);
    const [theirs, ours] = [await readFile(target), await readFile(restored)];
    let partcloneBlocks = 0;
    let extraBlocks = 0;
    for (let at = 0; at < SIZE; at += blockSize) {
      const block = theirs.subarray(at, at + blockSize);
      if (block.some((byte) => byte !== 0xee)) {
        partcloneBlocks++;
        expect(block.equals(ours.subarray(at, at + blockSize)), `block ${at / blockSize}`).toBe(true);
      } else if (ours.subarray(at, at + blockSize).some((byte) => byte !== 0)) {
        extraBlocks++;
      }
    }
    expect(partcloneBlocks).toBe(usedBlocks - agflBlocks);
    expect(extraBlocks).toBeLessThanOrEqual(agflBlocks);
  });
});

async function writeMarkerFile(path: string, size: number, byte: number): Promise<void> {
  const handle = await open(path, 'w');
  try {
    const block = Buffer.alloc(4 * MiB, byte);
    for (let at = 0; at < size; at += block.length) await handle.write(block, 0, Math.min(block.length, size - at), at);
  } finally {
    await handle.close();
  }
}

describeWithLoopDevices('XFS that cannot be mapped', () => {
  test('a dirty log (shut down while mounted) is imaged exactly, and show says why', async () => {
    const scope = useScope();
    const dir = await tempDir(scope, 'cairn-xfs-dirty-');
    const image = join(dir, 'dirty.img');
    await fillWithStaleData(image, DIRTY_SIZE);
    await run('mkfs.xfs', ['-q', '-f', image], { env: MKFS_ENV });
    const mountPoint = join(dir, 'mnt');
    await mountDevice(scope, await attachLoop(scope, image), mountPoint);
    await run('cp', ['-a', '/etc/hostname', mountPoint]);
    await run('sync', []);
    // Shut the filesystem down without writing the log out: what a crash leaves.
    await run('xfs_io', ['-x', '-c', 'shutdown', mountPoint]);
    await unmount(mountPoint);
    expect(await run('xfs_logprint', ['-t', image])).toMatch(/DIRTY/);

    const job = await writeJob(dir, { source: image, extra: { source: { type: 'volume', path: image, mode: 'used' } } });
    await init(job);
    const result = await backup(job);
    expect(result.bytesRead).toBe(DIRTY_SIZE);
    const shown = parseJson(await cairnOk('show', job, ['latest', '--json']));
    expect(shown.layout.mode).toBe('exact');
    expect(shown.layout.note).toMatch(/^xfs: the log is dirty \(unmounted uncleanly\): .*; imaged exactly$/);
    expect((await cairnOk('show', job, ['latest'])).stdout).toMatch(/note\s+xfs: the log is dirty/);
    const restored = join(dir, 'restored.img');
    await restore(job, 'latest', restored);
    expect(await sameBytes(restored, image)).toBe(true);
  });
});
