import { ExitCode } from '../../errors.js';
import { JobLoader } from '../../job/job-loader.js';
import { SnapshotsOperation } from '../../operations/snapshots.js';
import { isFileManifest } from '../../repository/snapshot.js';
import type { DamagedObject } from '../../repository/repository.js';
import { defineCommand, withJob } from '../command.js';
import { formatBytes } from '../format.js';
import { escapeName } from '../format-entries.js';

export const snapshotsCommand = defineCommand({
  command: 'snapshots <job>',
  describe: "List the snapshots in the job's repository",
  builder: (yargs) => withJob(yargs),
  async run(args, { core, output }) {
    const job = await core.get(JobLoader).load(args.job);
    const damaged: DamagedObject[] = [];
    const snapshots = await core.get(SnapshotsOperation).list(job, damaged);
    const rows = snapshots.map(({ id, manifest: m, objectSize }) => ({
      id,
      time: m.time,
      hostname: m.hostname,
      job: m.job,
      tags: m.tags ?? [],
      source: m.source,
      kind: isFileManifest(m) ? 'files' : 'volume',
      ...(isFileManifest(m)
        ? { paths: m.paths, size: m.stats.totalBytes, ...((m.skipped?.length || m.skippedCount) && { incomplete: true }) }
        : { size: m.size, imageDigest: m.imageDigest, layout: m.layout }),
      bytesAdded: m.stats.bytesAdded + objectSize,
    }));
    output.result(rows, () => {
      if (rows.length === 0) return 'No snapshots yet\n';
      const lines = rows.map((r) => `${r.id.slice(0, 12)}  ${r.time}  ${r.hostname.padEnd(14).slice(0, 14)}  ${r.kind.padEnd(6)}  ${formatBytes(r.size).padEnd(10)}  ${sourceColumn(r)}${r.tags.length ? `  [${r.tags.join(', ')}]` : ''}`);
      return ['ID            TIME                      HOST            KIND    SIZE        SOURCE [TAGS]', ...lines].join('\n') + '\n';
    });
    // The intact ones are listed; the damaged ones were named on stderr.
    return damaged.length > 0 ? ExitCode.damage : ExitCode.ok;
  },
});

/** A volume's device or image; a file snapshot's paths (and a note when some could not be read). */
function sourceColumn(row: { source: { path: string }; paths?: string[]; incomplete?: boolean }): string {
  const text = row.paths ? row.paths.join(', ') : row.source.path;
  return escapeName(Buffer.from(text)) + (row.incomplete ? ' (incomplete)' : '');
}
