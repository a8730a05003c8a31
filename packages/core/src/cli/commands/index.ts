import type { CliCommand } from '../command.js';
import { initCommand } from './init.js';
import { backupCommand } from './backup.js';
import { snapshotsCommand } from './snapshots.js';
import { restoreCommand } from './restore.js';
import { showCommand } from './show.js';
import { checkCommand } from './check.js';
import { forgetCommand } from './forget.js';
import { pruneCommand } from './prune.js';
import { unlockCommand } from './unlock.js';
import { repairCommand } from './repair.js';
import { keyCommand } from './key.js';
import { validateCommand } from './validate.js';
import { schemaCommand } from './schema.js';
import { pluginsCommand } from './plugins.js';
import { daemonCommand } from './daemon.js';
import { statusCommand } from './status.js';
import { uiCommand } from './ui.js';
import { serveCommand } from './serve.js';
import { mountCommand } from './mount.js';
import { umountCommand } from './umount.js';
import { exportCommand } from './export.js';
import { bootCommand } from './boot.js';
import { dumpCommand } from './dump.js';
import { lsCommand } from './ls.js';
import { findCommand } from './find.js';
import { diffCommand } from './diff.js';

/** Every command of the CLI, in the order `cairn --help` lists them. A new command is a new file, added here. */
export const COMMANDS: ReadonlyArray<CliCommand<any>> = [
  initCommand,
  backupCommand,
  snapshotsCommand,
  restoreCommand,
  serveCommand,
  bootCommand,
  showCommand,
  checkCommand,
  forgetCommand,
  pruneCommand,
  unlockCommand,
  repairCommand,
  keyCommand,
  validateCommand,
  schemaCommand,
  pluginsCommand,
  daemonCommand,
  statusCommand,
  uiCommand,
  mountCommand,
  umountCommand,
  exportCommand,
  dumpCommand,
  // Browsing file snapshots
  lsCommand,
  findCommand,
  diffCommand,
];
