import { resolve } from 'node:path';
import { ExitCode, UsageError } from '../../errors.js';
import { Environment } from '../../services.js';
import { EXPORT_FORMATS, exportImage, type ExportResult } from '../../nbd/export-image.js';
import { resolveServedSnapshot } from '../../nbd/served-snapshot.js';
import { defineCommand, withJob, withSnapshot } from '../command.js';
import { formatBytes } from '../format.js';

export const exportCommand = defineCommand({
  command: 'export <job> <snapshot>',
  describe: 'Write a snapshot as a virtual disk image (raw, qcow2, vhdx, vmdk) with qemu-img',
  builder: (yargs) =>
    withSnapshot(withJob(yargs))
      .option('format', { choices: EXPORT_FORMATS, demandOption: true, describe: 'The image format' })
      .option('to', { type: 'string', demandOption: true, describe: 'The image file to write' })
      .option('force', { type: 'boolean', default: false, describe: 'Replace an existing file' })
      .option('partition', { type: 'number', describe: 'Export only this partition (its number, as in /dev/sda2)' }),
  // Stops its qemu-img and NBD server itself, and removes the partial file (see exportImage).
  handlesInterrupt: true,
  async run(args, { core, output, interrupt }) {
    if (args.to.trim() === '') throw new UsageError('--to needs the image file to write, not an empty path');
    if (args.partition !== undefined && (!Number.isInteger(args.partition) || args.partition < 1)) throw new UsageError(`--partition must be a partition number (1, 2, …), not ${args.partition}`);
    const to = resolve(core.get<Environment>(Environment).cwd, args.to);
    const served = await resolveServedSnapshot(core, args.job, args.snapshot);
    const result = await exportImage({
      snapshot: served.id,
      layout: served.layout,
      format: args.format,
      to,
      force: args.force,
      server: served.server,
      ...(args.partition !== undefined && { partition: args.partition }),
    }, interrupt);
    output.result(result, () => describeExport(result));
    return ExitCode.ok;
  },
});

function describeExport(result: ExportResult): string {
  const what = result.partition === undefined ? 'snapshot' : `partition ${result.partition} of snapshot`;
  return `Exported ${what} ${result.snapshot.slice(0, 12)} to ${result.destination} (${result.format}, disk ${formatBytes(result.virtualSize)}, file ${formatBytes(result.allocatedBytes)} on disk)\n`;
}
