#!/usr/bin/env node
// The long run of the swap and LUKS header fuzz test
// (packages/source-volume/src/filesystems/swap-luks-fuzz.test.ts):
// `node scripts/fuzz-swap-luks.mjs [rounds per parser] [seed]`; the default is 100,000 damaged
// headers for each. The test prints the tally (mapped, refused and why) and fails on the first
// crash, on a swap map other than one valid header page, or on a LUKS map, naming the round.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const [rounds = '100000', seed] = process.argv.slice(2);
const env = { ...process.env, CAIRN_FUZZ_ROUNDS: rounds, ...(seed !== undefined && { CAIRN_SWAP_LUKS_FUZZ_SEED: seed }) };
const result = spawnSync('npx', ['vitest', 'run', 'packages/source-volume/src/filesystems/swap-luks-fuzz.test.ts'], { cwd: root, env, stdio: 'inherit' });
process.exitCode = result.status ?? 1;
