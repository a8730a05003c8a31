import { ExitCode } from '../../errors.js';
import { JobLoader } from '../../job/job-loader.js';
import { BrowseOperation, type FileSnapshotRef } from '../../operations/browse.js';
import type { Change, EntryCounts, SnapshotDiff } from '../../files/diff.js';
import { defineCommand, withJob } from '../command.js';
import { formatBytes } from '../format.js';
import { escapeName, textAndBytes } from '../format-entries.js';

export const diffCommand = defineCommand({
  command: 'diff <job> <a> <b>',
  describe: 'What changed between two file snapshots: + added, - removed, M modified, U metadata only',
  builder: (yargs) =>
    withJob(yargs)
      .positional('a', { type: 'string', demandOption: true, describe: "The older snapshot: an id, a prefix of one (4+ hex digits), or latest (the job's newest file snapshot)" })
      .positional('b', { type: 'string', demandOption: true, describe: 'The newer snapshot' }),
  async run(args, { core, output }) {
    const job = await core.get(JobLoader).load(args.job);
    const { older, newer, diff } = await core.get(BrowseOperation).diff(job, args.a, args.b);
    output.result(
      { older: snapshotJson(older), newer: snapshotJson(newer), changes: diff.changes.map(changeJson), summary: diff.summary },
      () => describeDiff(older, newer, diff),
    );
    return ExitCode.ok;
  },
});

function snapshotJson({ id, manifest }: FileSnapshotRef) {
  return { id, time: manifest.time, paths: manifest.paths };
}

function changeJson(change: Change) {
  return { ...textAndBytes('path', change.path), change: change.change, type: change.type, ...(change.what && { what: change.what }) };
}

function describeDiff(older: FileSnapshotRef, newer: FileSnapshotRef, diff: SnapshotDiff): string {
  const lines = [`comparing snapshot ${older.id.slice(0, 8)} (${older.manifest.time}) to ${newer.id.slice(0, 8)} (${newer.manifest.time}):`, ''];
  for (const change of diff.changes) {
    const path = escapeName(change.path) + (change.type === 'dir' ? '/' : '');
    lines.push(`${change.change}    ${path}${change.what ? `  (${change.what.join(', ')})` : ''}`);
  }
  if (diff.changes.length > 0) lines.push('');
  const s = diff.summary;
  lines.push(`${describeCounts('added', s.added)}, ${describeCounts('removed', s.removed)}, ${s.modified} modified, ${s.metadataOnly} metadata only; ${formatBytes(s.bytesAdded)} added, ${formatBytes(s.bytesRemoved)} removed`);
  return lines.join('\n') + '\n';
}

/** `3 added (2 files, 1 dir)`, `0 removed`. */
function describeCounts(what: string, counts: EntryCounts): string {
  const total = counts.files + counts.dirs + counts.others;
  const parts = [plural(counts.files, 'file'), plural(counts.dirs, 'dir'), plural(counts.others, 'other')].filter((p) => p !== undefined);
  return parts.length > 0 ? `${total} ${what} (${parts.join(', ')})` : `0 ${what}`;
}

function plural(n: number, noun: string): string | undefined {
  return n === 0 ? undefined : `${n} ${noun}${n === 1 ? '' : 's'}`;
}
