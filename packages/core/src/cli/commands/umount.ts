import { resolve } from 'node:path';
import { ExitCode, UsageError } from '../../errors.js';
import { Environment } from '../../services.js';
import { unmountSnapshot } from '../../nbd/mount.js';
import { defineCommand } from '../command.js';

export const umountCommand = defineCommand({
  command: 'umount <dir>',
  describe: 'Undo cairn mount: unmount the filesystems, free the loop devices, stop the processes it started',
  builder: (yargs) => yargs.positional('dir', { type: 'string', demandOption: true, describe: 'The folder given to cairn mount' }),
  async run(args, { core, output }) {
    if (args.dir.trim() === '') throw new UsageError('<dir> needs the folder given to cairn mount, not an empty path');
    const dir = resolve(core.get<Environment>(Environment).cwd, args.dir);
    const state = await unmountSnapshot(dir);
    output.result({ dir: state.dir, snapshot: state.snapshot }, () => `Unmounted snapshot ${state.snapshot.slice(0, 12)} from ${state.dir}\n`);
    return ExitCode.ok;
  },
});
