import { ExitCode } from '../../errors.js';
import { JobLoader } from '../../job/job-loader.js';
import { defineCommand, withJob } from '../command.js';

export const validateCommand = defineCommand({
  command: 'validate <job>',
  describe: 'Check a job file against the merged schema',
  builder: (yargs) => withJob(yargs),
  async run(args, { core, output }) {
    const job = await core.get(JobLoader).load(args.job);
    output.result({ valid: true, job: job.info.file }, () => `${job.info.file} is valid\n`);
    return ExitCode.ok;
  },
});
