import { ExitCode } from '../../errors.js';
import { JobLoader } from '../../job/job-loader.js';
import { BrowseOperation, type FileSnapshotRef } from '../../operations/browse.js';
import { compileGlob } from '../../files/glob.js';
import type { FoundVersion } from '../../files/find.js';
import { defineCommand, withJob } from '../command.js';
import { formatBytes, listOf } from '../format.js';
import { entryJson, escapeName, localTime } from '../format-entries.js';

/** Snapshots named one by one in a line; more are shown as a time range. */
const SNAPSHOTS_NAMED = 4;

export const findCommand = defineCommand({
  command: 'find <job> <pattern>',
  describe: "Find files in the job's file snapshots by name or path (glob), with the snapshots holding each version",
  builder: (yargs) =>
    withJob(yargs)
      .positional('pattern', {
        type: 'string',
        demandOption: true,
        describe: 'A glob (*, **, ?, [abc]) matched against names, or against whole paths when it has a "/" (quote it for the shell)',
      })
      .option('snapshot', { alias: 's', type: 'string', array: true, describe: 'Search only this snapshot (latest, an id or a prefix); repeatable' })
      .option('ignore-case', { alias: 'i', type: 'boolean', default: false, describe: 'Match without regard to case' }),
  async run(args, { core, output }) {
    const matcher = compileGlob(args.pattern, { ignoreCase: args.ignoreCase });
    const job = await core.get(JobLoader).load(args.job);
    const { snapshots, versions } = await core.get(BrowseOperation).find(job, matcher, { snapshots: listOf(args.snapshot) });
    const byId = new Map(snapshots.map((s) => [s.id, s]));
    output.result(
      output.json && versions.map((v) => ({ ...entryJson(v.path, v.entry), snapshots: v.snapshots, firstTime: byId.get(v.snapshots[0]!)!.manifest.time, lastTime: byId.get(v.snapshots.at(-1)!)!.manifest.time })),
      () => describeVersions(versions, byId, snapshots.length),
    );
    return ExitCode.ok;
  },
});

function describeVersions(versions: readonly FoundVersion[], byId: Map<string, FileSnapshotRef>, searched: number): string {
  if (searched === 0) return 'No file snapshots to search\n';
  const lines = versions.map((v) => {
    const size = v.entry.type === 'dir' ? 'dir' : formatBytes(v.entry.size);
    return `${size.padStart(10)}  ${localTime(v.entry.mtimeNs)}  ${escapeName(v.path)}${v.entry.type === 'dir' ? '/' : ''}  ${describeSnapshots(v.snapshots, byId, searched)}`;
  });
  lines.push(`${versions.length} version(s) of ${new Set(versions.map((v) => v.path.toString('latin1'))).size} path(s) in ${searched} snapshot(s)`);
  return lines.join('\n') + '\n';
}

/** `in 2 of 3 snapshots: 1a2b3c4d, 5e6f7a8b`, or for many, their time range. */
function describeSnapshots(ids: readonly string[], byId: Map<string, FileSnapshotRef>, searched: number): string {
  const count = ids.length === searched ? `all ${searched} snapshots` : `${ids.length} of ${searched} snapshots`;
  if (ids.length <= SNAPSHOTS_NAMED) return `(in ${count}: ${ids.map((id) => id.slice(0, 8)).join(', ')})`;
  const first = byId.get(ids[0]!)!;
  const last = byId.get(ids.at(-1)!)!;
  return `(in ${count}, ${first.manifest.time} ${first.id.slice(0, 8)} … ${last.manifest.time} ${last.id.slice(0, 8)})`;
}
