import { ExitCode } from '../../errors.js';
import { JobLoader } from '../../job/job-loader.js';
import { RepairOperation } from '../../operations/repair.js';
import type { RepairIndexReport, RepairSnapshotsReport } from '../../pipeline/repair.js';
import { defineCommand, withJob } from '../command.js';
import { formatRanges } from '../format.js';

export const repairCommand = defineCommand({
  command: 'repair <what> <job>',
  describe: 'Repair a damaged repository: index (rebuild it from the packs), then snapshots (record lost data as zeros)',
  builder: (yargs) =>
    withJob(yargs)
      .positional('what', { choices: ['index', 'snapshots'] as const, demandOption: true, describe: 'index: rebuild the index from the packs; snapshots: replace snapshots that need lost data' })
      .option('dry-run', { type: 'boolean', default: false, describe: 'snapshots: say what would be repaired, change nothing' })
      .option('read-data', { type: 'boolean', default: false, describe: 'snapshots: also read every pack; blobs that fail verification count as lost' })
      .option('forget', { type: 'boolean', default: false, describe: 'snapshots: remove snapshots nothing can be restored of (unreadable manifest or chunk maps)' }),
  async run(args, { core, output }) {
    const job = await core.get(JobLoader).load(args.job);
    const repair = core.get(RepairOperation);
    if (args.what === 'index') {
      const report = await repair.index(job);
      output.result(report, () => describeIndexRepair(report));
      return report.unreadablePacks.length > 0 ? ExitCode.damage : ExitCode.ok;
    }
    const report = await repair.snapshots(job, { dryRun: args.dryRun, readData: args.readData, forget: args.forget });
    output.result(report, () => describeSnapshotsRepair(report));
    const left = report.unrepairable.some((u) => !u.removed) || (report.dryRun && report.repaired.length > 0);
    return left ? ExitCode.damage : ExitCode.ok;
  },
});

function describeIndexRepair(report: RepairIndexReport): string {
  const lines = [
    `Indexed ${report.packs} pack(s) holding ${report.blobs} blob(s) in ${report.indexFilesWritten} new index file(s); removed ${report.indexFilesRemoved} old one(s)`,
  ];
  if (report.packsAdded) lines.push(`${report.packsAdded} pack(s) no index named before are indexed now`);
  if (report.packsMissing.length) lines.push(`${report.packsMissing.length} pack(s) the old index named are missing: ${report.packsMissing.join(', ')}`);
  for (const pack of report.unreadablePacks) lines.push(`DAMAGE ${pack.object}: ${pack.message}; not indexed`);
  if (report.packsMissing.length || report.unreadablePacks.length) lines.push('Snapshots that need their blobs: `cairn repair snapshots` records the loss');
  return lines.join('\n') + '\n';
}

function describeSnapshotsRepair(report: RepairSnapshotsReport): string {
  const lines: string[] = [];
  for (const r of report.repaired) {
    const done = r.replacement ? `replaced by ${r.replacement.slice(0, 12)}` : 'would be replaced';
    if (r.lostPaths) {
      const shown = r.lostPaths.slice(0, 10);
      const more = r.lostPathCount! > shown.length ? `, … (${r.lostPathCount! - shown.length} more)` : '';
      lines.push(`snapshot ${r.snapshot.slice(0, 12)} ${done}, without the lost data of ${r.lostPathCount} path(s): ${shown.join(', ')}${more}`);
    } else {
      lines.push(`snapshot ${r.snapshot.slice(0, 12)} ${done}, with zeros for ${formatRanges(r.lost)}`);
    }
  }
  for (const u of report.unrepairable) lines.push(`DAMAGE ${u.object}: ${u.message}${u.removed ? '; removed' : '; left as it is (--forget removes it)'}`);
  const done = report.dryRun ? 'would be repaired (dry run: nothing changed)' : 'repaired';
  lines.push(`${report.repaired.length} of ${report.snapshots} snapshot(s) ${done}${report.repaired.length === 0 && report.unrepairable.length === 0 ? '; none needs lost data' : ''}`);
  return lines.join('\n') + '\n';
}
