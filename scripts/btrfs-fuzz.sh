#!/usr/bin/env bash
# The long run of the Btrfs used-block map fuzz test (packages/source-volume/src/filesystems/
# btrfs-fuzz.test.ts): 100,002 rounds of random metadata damage by default (33,334 per variant),
# a summary (mapped, refused, judged by btrfs-progs, refusal reasons) written as JSON.
#   scripts/btrfs-fuzz.sh [rounds-per-variant] [seed]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-33334}"
seed="${2:-20261202}"
report="${CAIRN_FUZZ_REPORT:-btrfs-fuzz-report.json}"
echo "btrfs fuzz: $rounds rounds per variant, seed $seed, summary in $report"
CAIRN_FUZZ_ROUNDS="$rounds" CAIRN_BTRFS_FUZZ_SEED="$seed" CAIRN_FUZZ_REPORT="$report" \
  npx vitest run packages/source-volume/src/filesystems/btrfs-fuzz.test.ts
cat "$report"
