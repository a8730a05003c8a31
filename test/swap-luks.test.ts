// Swap areas and LUKS volumes through the real CLI. A swap area over stale random bytes is
// stored as its header page alone and restored as that page and zeros, which blkid, swaplabel
// and the kernel (swapon on a loop device) take for the same swap area. A LUKS1 or LUKS2 volume
// (luksFormat on an image file with a fast PBKDF; no mapping) asked for in used mode is imaged
// exactly, with a note naming its version, UUID and cipher, and restores byte for byte.
import { join } from 'node:path';
import { expect, test } from 'vitest';
import {
  MiB,
  attachLoop,
  backup,
  cairnOk,
  describeWithLoopDevices,
  fillWithStaleData,
  init,
  parseJson,
  restore,
  run,
  runCommand,
  sameBytes,
  tempDir,
  useScope,
  writeJob,
} from './utils/index.js';

const SWAP_SIZE = 32 * MiB;
const LUKS_SIZE = 24 * MiB;
const UUID = '5d0c1e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f';

async function blkid(path: string): Promise<Record<string, string>> {
  const fields: Record<string, string> = {};
  for (const match of (await run('blkid', ['-p', '-o', 'export', path])).matchAll(/^(\w+)=(.*)$/gm)) fields[match[1]!] = match[2]!;
  return fields;
}

async function usedModeJob(dir: string, image: string): Promise<string> {
  const job = await writeJob(dir, { source: image, extra: { source: { type: 'volume', path: image, mode: 'used' } } });
  await init(job);
  return job;
}

describeWithLoopDevices('swap through the CLI', () => {
  test('only the header page is stored; the restore is the same swap area to blkid, swaplabel and swapon', async () => {
    const scope = useScope();
    const dir = await tempDir(scope, 'cairn-swap-e2e-');
    const image = join(dir, 'swap.img');
    await fillWithStaleData(image, SWAP_SIZE);
    await run('mkswap', ['-q', '-L', 'lbl', '-U', UUID, image]);

    const job = await usedModeJob(dir, image);
    const result = await backup(job);
    expect(result.bytesRead).toBe(4096);
    expect(result.bytesAdded).toBeLessThan(8192); // the page, compressed, and the pack's overhead; not 32 MiB of stale bytes
    const shown = parseJson(await cairnOk('show', job, ['latest', '--json']));
    expect([shown.layout.mode, shown.layout.filesystem, shown.layout.note]).toEqual(['used', 'swap', undefined]);

    const restored = join(dir, 'restored.img');
    await restore(job, 'latest', restored);
    expect(await sameBytes(restored, image, 4096)).toBe(true);
    expect(await blkid(restored)).toMatchObject({ TYPE: 'swap', UUID, LABEL: 'lbl', VERSION: '1' });
    expect(await run('swaplabel', [restored])).toBe(`LABEL: lbl\nUUID:  ${UUID}\n`);
    const rest = await runCommand('cmp', ['-n', String(SWAP_SIZE - 4096), '-i', '4096', restored, '/dev/zero']);
    expect(rest.exitCode, `the pages after the header are zeros: ${rest.stdout}`).toBe(0);

    // The kernel's own check: swapon reads the header (signature, version, size, bad pages).
    const device = await attachLoop(scope, restored);
    await run('swapon', [device]);
    scope.defer(`swapoff ${device}`, () => runCommand('swapoff', [device]));
    expect(await run('swapon', ['--show=NAME,TYPE,SIZE', '--noheadings', '--bytes'])).toMatch(new RegExp(`^${device}\\s+partition\\s+${SWAP_SIZE - 4096}$`, 'm'));
    await run('swapoff', [device]);
  });
});

describeWithLoopDevices('LUKS through the CLI', () => {
  for (const type of ['luks1', 'luks2'] as const) {
    test(`${type}: imaged exactly with the reason in show; the restore is byte-identical and luksDump reads it`, async () => {
      const scope = useScope();
      const dir = await tempDir(scope, `cairn-${type}-e2e-`);
      const image = join(dir, `${type}.img`);
      await fillWithStaleData(image, LUKS_SIZE);
      await run('cryptsetup', ['luksFormat', '--type', type, '-q', '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000', '--key-file', '-', image], { input: 'secret' });
      const uuid = (await run('cryptsetup', ['luksUUID', image])).trim();

      const job = await usedModeJob(dir, image);
      const result = await backup(job);
      expect(result.bytesRead).toBe(LUKS_SIZE);
      const shown = parseJson(await cairnOk('show', job, ['latest', '--json']));
      const version = type === 'luks1' ? 1 : 2;
      expect([shown.layout.mode, shown.layout.filesystem]).toEqual(['exact', 'luks']);
      expect(shown.layout.note).toBe(`LUKS${version} encrypted volume (UUID ${uuid}, aes-xts-plain64): the payload is opaque without the key; imaged exactly`);
      expect((await cairnOk('show', job, ['latest'])).stdout).toContain(`note       LUKS${version} encrypted volume (UUID ${uuid}`);

      const restored = join(dir, 'restored.img');
      await restore(job, 'latest', restored);
      expect(await sameBytes(restored, image)).toBe(true);
      const dump = await run('cryptsetup', ['luksDump', restored]);
      expect(dump).toMatch(new RegExp(`^Version:\\s+${version}$`, 'm'));
      expect(dump).toMatch(new RegExp(`^UUID:\\s+${uuid}$`, 'm'));
    });
  }
});
