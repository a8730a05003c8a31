import { ExitCode } from '../../errors.js';
import { JobLoader } from '../../job/job-loader.js';
import { InitOperation } from '../../operations/init.js';
import { defineCommand, withJob } from '../command.js';

export const initCommand = defineCommand({
  command: 'init <job>',
  describe: "Create the repository the job's target points at",
  builder: (yargs) => withJob(yargs),
  async run(args, { core, output }) {
    const job = await core.get(JobLoader).load(args.job);
    const result = await core.get(InitOperation).run(job);
    output.result(result, () => `Created repository ${result.id.slice(0, 12)} at ${result.location}\n`);
    return ExitCode.ok;
  },
});
