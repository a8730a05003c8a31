import { copyFile, open, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';
import { beforeAll, expect, test } from 'vitest';
import { MiB, describeWithLoopDevices, makeExt4Image, run, runCommand, tempDir, useScope, useSuiteScope, writeFileTree } from './utils/index.js';

/*
 * The tools behind `pnpm bench`'s variants part (issue 17): bench/variants.sh builds the LVM+XFS
 * and Btrfs disks from a corpus volume's files, bench/verify-variant.sh checks a restore of them.
 * A wrong disk or a check that passes anything would make the benchmark's figures meaningless,
 * so both run here on a small corpus: 320 MiB ext4 volumes (XFS needs 300 MB) holding a file
 * tree under usr/ and home/, the second a day later (a file edited, one added, one deleted).
 */

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const VOLUME = 320 * MiB;
const env = { ...process.env, LVM_SUPPRESS_FD_WARNINGS: '1' };

let corpus: string;
let buildLog: string;

/** Every regular file of a tree with its b3sum, as "b3sum  ./path" lines under `prefix` (sorted). */
async function b3sums(tree: string, prefix: string): Promise<string[]> {
  const out = await run('bash', ['-c', 'find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r b3sum'], { cwd: tree });
  return out.trim().split('\n').map((l) => l.replace('  ./', `  ./${prefix}`)).sort();
}
const manifestSums = async (file: string): Promise<string[]> =>
  (await readFile(file, 'utf8')).split('\n').filter((l) => /^[0-9a-f]{64}  /.test(l)).sort();

async function verify(kind: string, restored: string, original: string): Promise<{ code: number; line: string }> {
  const r = await runCommand('bash', [join(ROOT, 'bench/verify-variant.sh'), kind, restored, original]);
  return { code: r.exitCode ?? -1, line: r.stdout.trim().split('\n').at(-1) ?? '' };
}

async function readAt(file: string, offset: number, length: number): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, offset);
    return buffer;
  } finally {
    await handle.close();
  }
}

const loopsOn = async (file: string): Promise<string> => run('losetup', ['-j', file]);

describeWithLoopDevices('bench variants: variants.sh and verify-variant.sh', () => {
  const trees: Record<string, string> = {};
  const scope = useSuiteScope();

  beforeAll(async () => {
    corpus = await tempDir(scope, 'cairn-bench-variants-');
    for (const day of [1, 2]) {
      const tree = join(corpus, `tree${day}`);
      await writeFileTree(join(tree, 'usr'), { seed: 17, randomBytes: 6 * MiB, textBytes: 3 * MiB });
      await writeFileTree(join(tree, 'home/user'), { seed: 18, randomBytes: 4 * MiB, textBytes: 1 * MiB });
      if (day === 2) {
        await run('bash', ['-c', 'printf patched | dd of=usr/etc/hostname bs=1 seek=3 conv=notrunc status=none && head -c 3M /dev/urandom > home/user/new.bin && rm usr/empty'], { cwd: tree });
      }
      trees[day] = tree;
      await makeExt4Image(join(corpus, day === 1 ? 'sysvol.img' : 'sysvol2.img'), VOLUME, tree);
    }
    buildLog = await run('bash', [join(ROOT, 'bench/variants.sh'), corpus], { env });
  }, 600_000);

  test('LVM+XFS: VG rhel with root (XFS, the volume size) and swap laid out where lvmxfs.layout says, the rest stale random data', async () => {
    const [rootOffset, rootSize, swapOffset, swapSize] = (await readFile(join(corpus, 'lvmxfs.layout'), 'utf8')).trim().split(' ').map(Number);
    expect(rootSize).toBe(VOLUME);
    expect(swapSize).toBe(40 * MiB);
    expect(swapOffset).toBe(rootOffset! + VOLUME);
    const scope = useScope();
    const image = join(corpus, 'lvmxfs.img');
    const dev = (await run('losetup', ['-r', '-f', '--show', image])).trim();
    scope.defer(`detach ${dev}`, () => run('losetup', ['-d', dev]).then(() => undefined));
    const lvs = await run('lvs', ['--devices', dev, '--noheadings', '--segments', '--units', 'b', '--nosuffix', '-o', 'lv_name,seg_pe_ranges,lv_size'], { env });
    const rows = lvs.trim().split('\n').map((l) => l.trim().split(/\s+/));
    expect(rows).toEqual([['root', `${dev}:0-79`, String(VOLUME)], ['swap', `${dev}:80-89`, String(40 * MiB)]]);
    const peStart = Number((await run('pvs', ['--devices', dev, '--noheadings', '--units', 'b', '--nosuffix', '-o', 'pe_start'], { env })).trim());
    expect(rootOffset).toBe(peStart);
    const probe = async (offset: number, size: number) =>
      run('blkid', ['-p', '-o', 'export', '-s', 'TYPE', '-s', 'LABEL', '--offset', String(offset), '--size', String(size), image]);
    expect(await probe(rootOffset!, rootSize!)).toMatch(/LABEL=root\nTYPE=xfs/);
    expect(await probe(swapOffset!, swapSize!)).toMatch(/LABEL=swap\nTYPE=swap/);
    // The unallocated extents after the swap LV and the swap area past its header: random, not zeros.
    for (const offset of [swapOffset! + swapSize! + MiB, swapOffset! + 8 * MiB]) {
      const stale = await readAt(image, offset, MiB);
      expect(deflateSync(stale).length).toBeGreaterThan(0.99 * MiB);
    }
  });

  test('each image holds exactly its day of the corpus, and the manifests say so', async () => {
    for (const [variant, prefix] of [['lvmxfs', ''], ['btrfs', 'root/']] as const) {
      for (const day of [1, 2]) {
        const expected = [...(await b3sums(join(trees[day]!, 'usr'), `${prefix}usr/`)), ...(await b3sums(join(trees[day]!, 'home'), 'home/'))].sort();
        expect(await manifestSums(join(corpus, `${variant}${day === 1 ? '' : '2'}.manifest`))).toEqual(expected);
      }
    }
    const day2 = await readFile(join(corpus, 'lvmxfs2.manifest'), 'utf8');
    expect(day2).toMatch(/\.\/home\/user\/new\.bin\n/);
    expect(day2).not.toMatch(/\.\/usr\/empty\n/);
  });

  test('verify-variant.sh passes an identical disk and fails a different day, a damaged swap header or filesystem', async () => {
    for (const variant of ['lvmxfs', 'btrfs']) {
      const day2 = join(corpus, `${variant}2.img`);
      const ok = await verify(variant, day2, day2);
      expect(ok.line).toMatch(/^OK .*\(\d+ files identical\)$/);
      expect(ok.code).toBe(0);
      const other = await verify(variant, join(corpus, `${variant}.img`), day2);
      expect(other.code).toBe(1);
      expect(other.line).toMatch(/^FAILED .*manifest line\(s\) differ/);
    }
    const [, , swapOffset] = (await readFile(join(corpus, 'lvmxfs.layout'), 'utf8')).trim().split(' ').map(Number);
    const damaged = join(corpus, 'damaged.img');
    await copyFile(join(corpus, 'lvmxfs2.img'), damaged);
    // mkswap's signature is in the last 10 bytes of the header page.
    await run('dd', ['if=/dev/zero', `of=${damaged}`, 'bs=1', `seek=${swapOffset! + 4096 - 10}`, 'count=10', 'conv=notrunc', 'status=none']);
    expect((await verify('lvmxfs', damaged, join(corpus, 'lvmxfs2.img'))).line).toMatch(/^FAILED .*swap header/);
    await copyFile(join(corpus, 'btrfs2.img'), damaged);
    await run('dd', ['if=/dev/zero', `of=${damaged}`, 'bs=64K', 'seek=1', 'count=1', 'conv=notrunc', 'status=none']); // the superblock
    expect((await verify('btrfs', damaged, join(corpus, 'btrfs2.img'))).line).toMatch(/^FAILED btrfs check/);
  });

  test('nothing is left attached or mounted, and a second run reuses the cached disks', async () => {
    for (const name of ['sysvol.img', 'sysvol2.img', 'lvmxfs.img', 'lvmxfs2.img', 'btrfs.img', 'btrfs2.img']) {
      expect(await loopsOn(join(corpus, name))).toBe('');
    }
    expect(await readFile('/proc/self/mounts', 'utf8')).not.toContain('cairn-variants.');
    expect(buildLog).toMatch(/variants: building lvmxfs/);
    const again = await run('bash', [join(ROOT, 'bench/variants.sh'), corpus], { env });
    expect(again).toMatch(/variants: reusing .*lvmxfs\.img\nvariants: reusing .*btrfs\.img/);
  });
});
