import { ExitCode } from '../../errors.js';
import { JobLoader } from '../../job/job-loader.js';
import { BrowseOperation } from '../../operations/browse.js';
import type { Listing } from '../../files/list.js';
import { defineCommand, withJob, withSnapshot } from '../command.js';
import { entryJson, escapeName, longListing } from '../format-entries.js';

export const lsCommand = defineCommand({
  command: 'ls <job> <snapshot> [path]',
  describe: 'List a folder of a file snapshot like `ls -l` (a path the snapshot does not hold: exit 1)',
  builder: (yargs) =>
    withSnapshot(withJob(yargs))
      .positional('snapshot', { type: 'string', demandOption: true, describe: "A snapshot id, a prefix of one (4+ hex digits), or latest (the job's newest file snapshot)" })
      .positional('path', { type: 'string', default: '/', describe: 'An absolute path in the snapshot, such as /home/u/docs; a file lists itself' })
      .option('recursive', { alias: 'R', type: 'boolean', default: false, describe: 'Everything under the folder, one line per entry with its full path' })
      .option('long', { alias: 'l', type: 'boolean', default: true, describe: 'The long format (always; accepted out of habit)' }),
  async run(args, { core, output }) {
    const job = await core.get(JobLoader).load(args.job);
    const { listing } = await core.get(BrowseOperation).ls(job, args.snapshot, args.path, { recursive: args.recursive });
    // The JSON is built only when it is printed: a recursive listing may hold millions of entries.
    output.result(output.json ? listing.entries.map(({ path, entry }) => entryJson(path, entry)) : undefined, () => describeListing(listing, args.recursive));
    return ExitCode.ok;
  },
});

/** Names of a folder's children; full paths with --recursive, and for a file (as `ls -l FILE` shows it). */
function describeListing(listing: Listing, recursive: boolean): string {
  const fullPaths = recursive || !listing.folder;
  const lines = longListing(listing.entries.map(({ path, entry }) => ({ label: escapeName(fullPaths ? path : entry.name), entry })));
  return lines.map((line) => `${line}\n`).join('');
}
