import { JobLoader } from '../../job/job-loader.js';
import { BackupOperation } from '../../operations/backup.js';
import { defineCommand, withJob } from '../command.js';
import { exitCodeOf } from '../output.js';
import { formatBytes } from '../format.js';

export const backupCommand = defineCommand({
  command: 'backup <job>',
  describe: 'Run the job once: image the source into the repository',
  builder: (yargs) => withJob(yargs),
  async run(args, { core, output }) {
    const job = await core.get(JobLoader).load(args.job);
    const { result, tapFailures } = await core.get(BackupOperation).run(job);
    const { manifest, snapshot, bytesRead, bytesAdded } = result;
    const { stats } = manifest;
    output.result(
      {
        snapshot,
        time: manifest.time,
        size: manifest.size,
        bytesRead,
        bytesAdded,
        chunks: { data: stats.dataChunks, new: stats.newChunks, zero: stats.zeroChunks, unused: stats.unusedChunks },
        durationMs: stats.durationMs,
        imageDigest: manifest.imageDigest,
      },
      () =>
        `Snapshot ${snapshot.slice(0, 12)} saved: read ${formatBytes(bytesRead)} of ${formatBytes(manifest.size)}, ` +
        `added ${formatBytes(bytesAdded)} to the repository (${stats.newChunks} new of ${stats.dataChunks} data chunks) in ${(stats.durationMs / 1000).toFixed(1)} s\n`,
    );
    return exitCodeOf(tapFailures);
  },
});
