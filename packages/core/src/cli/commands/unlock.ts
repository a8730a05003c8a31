import { ExitCode } from '../../errors.js';
import { JobLoader } from '../../job/job-loader.js';
import { UnlockOperation, type LockSummary } from '../../operations/unlock.js';
import { defineCommand, withJob } from '../command.js';

export const unlockCommand = defineCommand({
  command: 'unlock <job>',
  describe: 'Remove stale locks (of processes that are gone, or not refreshed for 30 minutes)',
  builder: (yargs) => withJob(yargs).option('remove-all', { type: 'boolean', default: false, describe: 'Remove every lock, also live ones: only when you know no cairn uses the repository' }),
  async run(args, { core, output }) {
    const job = await core.get(JobLoader).load(args.job);
    const result = await core.get(UnlockOperation).run(job, { all: args.removeAll });
    output.result(result, () => {
      const lines = result.removed.map((l) => `Removed lock of ${describe(l)}${l.stale ? `: ${l.stale}` : ''}`);
      lines.push(`${result.removed.length} lock(s) removed`);
      for (const l of result.remaining) lines.push(`Still held: ${describe(l)} (\`cairn unlock --remove-all\` removes it)`);
      return lines.join('\n') + '\n';
    });
    return ExitCode.ok;
  },
});

function describe(l: LockSummary): string {
  return `${l.operation} (${l.mode}, pid ${l.pid} on ${l.hostname}, since ${l.started}, refreshed ${l.refreshed})`;
}
