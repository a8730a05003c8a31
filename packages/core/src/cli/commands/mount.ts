import { resolve } from 'node:path';
import { ExitCode, UsageError } from '../../errors.js';
import { Environment } from '../../services.js';
import { mountSnapshot, type MountResult } from '../../nbd/mount.js';
import { resolveServedSnapshot } from '../../nbd/served-snapshot.js';
import { defineCommand, withJob, withSnapshot } from '../command.js';

export const mountCommand = defineCommand({
  command: 'mount <job> <snapshot> <dir>',
  describe: "Mount a snapshot's filesystems read-only under DIR/p1, DIR/p2, … (DIR/p0 for a bare filesystem), until cairn umount DIR",
  builder: (yargs) =>
    withSnapshot(withJob(yargs))
      .positional('dir', { type: 'string', demandOption: true, describe: 'An empty folder (created if missing)' })
      .option('partition', { type: 'number', describe: 'Mount only this partition (its number, as in /dev/sda2)' }),
  // A mount interrupted half way undoes itself (see mountSnapshot): its server is detached.
  handlesInterrupt: true,
  async run(args, { core, output, interrupt }) {
    if (args.dir.trim() === '') throw new UsageError('<dir> needs a folder to mount the snapshot under, not an empty path');
    if (args.partition !== undefined && (!Number.isInteger(args.partition) || args.partition < 0)) throw new UsageError(`--partition must be a partition number (1, 2, …), not ${args.partition}`);
    const served = await resolveServedSnapshot(core, args.job, args.snapshot);
    const dir = resolve(core.get<Environment>(Environment).cwd, args.dir);
    const result = await mountSnapshot({ dir, snapshot: served.id, layout: served.layout, server: served.server, interrupt, ...(args.partition !== undefined && { partition: args.partition }) });
    output.result(result, () => describeMount(result));
    return ExitCode.ok;
  },
});

function describeMount(result: MountResult): string {
  const lines = [`Mounted snapshot ${result.snapshot.slice(0, 12)} read-only under ${result.dir}:`];
  for (const m of result.mounted) lines.push(`  ${m.path}  ${m.filesystem} (${m.driver === 'kernel' ? 'kernel' : m.driver}, ${m.device})`);
  for (const s of result.skipped) lines.push(`  p${s.partition} not mounted: ${s.reason}`);
  if (result.mounted.length === 0) lines.push('  (no filesystem to mount)');
  lines.push(`Undo with: cairn umount ${result.dir}`);
  return lines.join('\n') + '\n';
}
