#!/usr/bin/env node
// The long run of the LVM2 fuzz test (packages/source-volume/src/filesystems/lvm-fuzz.test.ts):
// `node scripts/fuzz-lvm.mjs [rounds] [seed]`; the default is 100,000 damaged inputs (label,
// metadata area headers and text, checksums wrong or recomputed). The test prints the tally per
// kind of damage (refused, same map, other map) and fails on the first crash or on a map that
// leaves out an extent the metadata in force gives an LV, naming the seed and round to replay.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const [rounds = '100000', seed] = process.argv.slice(2);
const env = { ...process.env, CAIRN_FUZZ_ROUNDS: rounds, ...(seed !== undefined && { CAIRN_LVM_FUZZ_SEED: seed }) };
const result = spawnSync('npx', ['vitest', 'run', 'packages/source-volume/src/filesystems/lvm-fuzz.test.ts'], { cwd: root, env, stdio: 'inherit' });
process.exitCode = result.status ?? 1;
