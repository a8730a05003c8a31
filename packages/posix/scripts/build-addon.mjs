// Compiles the addon (build/Release/posix.node) with node-gyp; run by `pnpm install` (the
// package's `install` script). node-gyp comes from pnpm or npm (both put it on the PATH of
// lifecycle scripts and name it in npm_config_node_gyp). Node's headers are taken from the
// installation of the node running this script when it ships them (Debian's /usr/include/node,
// nvm, the official tarballs), so nothing is downloaded; npm_config_nodedir wins when set.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function nodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = resolve(dirname(process.execPath), '..');
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined;
}

function nodeGypCommand() {
  const script = process.env.npm_config_node_gyp;
  if (script && existsSync(script)) return [process.execPath, script];
  return ['node-gyp'];
}

const dir = nodeDir();
const [command, ...prefixArgs] = nodeGypCommand();
const args = [...prefixArgs, 'rebuild', ...(dir ? [`--nodedir=${dir}`] : [])];
const result = spawnSync(command, args, { cwd: packageDir, stdio: 'inherit' });
if (result.error) {
  console.error(`@cairn/posix: cannot run node-gyp (${result.error.message}); it comes with pnpm and npm: run \`pnpm install\``);
  process.exit(1);
}
process.exit(result.status ?? 1);
