import { ExitCode, UsageError } from '../../errors.js';
import type { SecretRef } from '../../target.js';
import { JobLoader } from '../../job/job-loader.js';
import { KeyOperation } from '../../operations/keys.js';
import { defineCommand, withJob } from '../command.js';

export const keyCommand = defineCommand({
  command: 'key <action> <job>',
  describe: 'Manage the passwords that open the repository: list, add',
  builder: (yargs) =>
    withJob(yargs)
      .positional('action', { choices: ['list', 'add'] as const, demandOption: true })
      .option('new-password-env', { type: 'string', describe: 'add: environment variable holding the new password' })
      .option('new-password-file', { type: 'string', describe: 'add: file holding the new password' }),
  async run(args, { core, output }) {
    const job = await core.get(JobLoader).load(args.job);
    const keys = core.get(KeyOperation);
    if (args.action === 'list') {
      const list = await keys.list(job);
      output.result(list, () => list.map((k) => `${k.current ? '*' : ' '} ${k.id.slice(0, 12)}  ${k.created}  ${k.username}@${k.hostname}`).join('\n') + '\n');
      return ExitCode.ok;
    }
    const ref: SecretRef | undefined = args.newPasswordEnv ? { env: args.newPasswordEnv } : args.newPasswordFile ? { file: args.newPasswordFile } : undefined;
    if (!ref) throw new UsageError('key add needs --new-password-env VAR or --new-password-file FILE');
    const id = await keys.add(job, ref);
    output.result({ id }, () => `Added key ${id.slice(0, 12)}\n`);
    return ExitCode.ok;
  },
});
