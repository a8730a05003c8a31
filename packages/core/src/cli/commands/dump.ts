import { ExitCode, UsageError } from '../../errors.js';
import { JobLoader } from '../../job/job-loader.js';
import { DumpOperation } from '../../operations/dump.js';
import { defineCommand, withJob, withSnapshot } from '../command.js';

export const dumpCommand = defineCommand({
  command: 'dump <job> <snapshot> <path>',
  describe: "Write a file of a file snapshot to standard output, or a folder as a tar stream (pipe it into `tar -x`)",
  builder: (yargs) => withSnapshot(withJob(yargs)).positional('path', { type: 'string', demandOption: true, describe: 'Absolute path in the snapshot, e.g. /home/u/notes.txt or /home/u/docs' }),
  async run(args, { core, output }) {
    // Standard output carries the data: a JSON result has no place there.
    if (args.json) throw new UsageError('`cairn dump` writes the file or tar stream to standard output; --json does not apply (`cairn ls --json` describes entries)');
    const job = await core.get(JobLoader).load(args.job);
    await core.get(DumpOperation).run(job, args.snapshot, args.path, writerOf(output.stdout));
    return ExitCode.ok;
  },
});

/** Writes to a stream, resolving once the stream has taken the bytes: memory stays bounded however slow the reader. */
function writerOf(stream: NodeJS.WritableStream): (bytes: Buffer) => Promise<void> {
  return (bytes) => new Promise((resolve, reject) => void stream.write(bytes, (err) => (err ? reject(err) : resolve())));
}
