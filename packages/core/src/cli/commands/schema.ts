import { ExitCode } from '../../errors.js';
import { JobSchema } from '../../job/job-schema.js';
import { defineCommand } from '../command.js';

export const schemaCommand = defineCommand({
  command: 'schema',
  describe: "Print the job file JSON Schema, with every enabled plugin's settings",
  builder: (yargs) => yargs,
  async run(_args, { core, output }) {
    // The schema is JSON whether or not --json is given.
    const schema = core.get(JobSchema).schema;
    output.result(schema, () => JSON.stringify(schema, null, 2) + '\n');
    return ExitCode.ok;
  },
});
