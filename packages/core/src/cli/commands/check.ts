import { ExitCode } from '../../errors.js';
import { JobLoader } from '../../job/job-loader.js';
import { CheckOperation } from '../../operations/check.js';
import { parseReadDataSubset, type CheckReport, type LostPaths } from '../../pipeline/check.js';
import { defineCommand, withJob } from '../command.js';
import { formatBytes, formatRanges } from '../format.js';

export const checkCommand = defineCommand({
  command: 'check <job>',
  describe: 'Verify the repository structure, or every byte with --read-data',
  builder: (yargs) =>
    withJob(yargs)
      .option('read-data', { type: 'boolean', default: false, describe: 'Read, decrypt and verify every pack' })
      .option('read-data-subset', {
        type: 'string',
        describe: 'Read and verify only part of the packs: n/m (those whose id starts with a byte that is n-1 modulo m) or x% (a random choice of that share of the bytes)',
      }),
  async run(args, { core, output }) {
    const job = await core.get(JobLoader).load(args.job);
    const subset = args.readDataSubset === undefined ? undefined : parseReadDataSubset(args.readDataSubset);
    const report = await core.get(CheckOperation).run(job, { readData: args.readData, subset });
    output.result(report, () => describeReport(report));
    return report.problems.length > 0 ? ExitCode.damage : ExitCode.ok;
  },
});

/** `3 path(s): /a, /b, /c` or `25 path(s): /a, … (10 shown)`; a folder's path ends in `/` (its whole listing is lost), `/` alone is the whole snapshot. */
function describeLostPaths(lost: LostPaths): string {
  if (lost.count === 1 && lost.paths[0] === '/') return 'everything (its root tree is lost)';
  const more = lost.count > lost.paths.length ? `, … (${lost.paths.length} of them shown)` : '';
  return `${lost.count} path(s): ${lost.paths.join(', ')}${more}`;
}

function describeReport(report: CheckReport): string {
  const subset = report.readDataSubset ? ` of ${report.packsRead} pack(s), subset ${report.readDataSubset}` : '';
  const read = report.readData ? `, read ${formatBytes(report.bytesRead)}${subset}` : ' (structure only; --read-data reads every byte)';
  const lines = [`Checked ${report.snapshots} snapshot(s), ${report.packs} pack(s), ${report.blobs} blob(s)${read}`];
  if (report.unreferencedPacks.length) lines.push(`${report.unreferencedPacks.length} pack(s) are not in any index (left by an interrupted backup; harmless)`);
  for (const p of report.problems) {
    const affected = p.snapshots.length ? `; affects snapshot(s) ${p.snapshots.map((s) => s.slice(0, 12)).join(', ')}` : '';
    lines.push(`DAMAGE ${p.object}: ${p.message}${affected}`);
    for (const [snapshot, ranges] of Object.entries(p.ranges)) lines.push(`  snapshot ${snapshot.slice(0, 12)} loses ${formatRanges(ranges)}`);
    for (const [snapshot, lost] of Object.entries(p.paths ?? {})) lines.push(`  snapshot ${snapshot.slice(0, 12)} loses ${describeLostPaths(lost)}`);
  }
  lines.push(report.problems.length ? `${report.problems.length} problem(s) found` : 'No problems found');
  return lines.join('\n') + '\n';
}
