#!/usr/bin/env node
// The long run of the XFS fuzz test (packages/source-volume/src/filesystems/xfs-fuzz.test.ts):
// `node scripts/fuzz-xfs.mjs [rounds per variant] [seed]`; the default, 34,000 rounds on each
// of its three filesystems, is 102,000 damaged inputs. The test prints the tally (mapped,
// refused, judged by xfs_db, the commonest reasons, seconds) and fails on the first map that
// leaves out a block in use, naming the seed and round that replay it.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const [rounds = '34000', seed] = process.argv.slice(2);
const env = { ...process.env, CAIRN_XFS_FUZZ_ROUNDS: rounds, ...(seed !== undefined && { CAIRN_XFS_FUZZ_SEED: seed }) };
const result = spawnSync('npx', ['vitest', 'run', 'packages/source-volume/src/filesystems/xfs-fuzz.test.ts'], { cwd: root, env, stdio: 'inherit' });
process.exitCode = result.status ?? 1;
