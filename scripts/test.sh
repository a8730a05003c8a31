#!/usr/bin/env bash
# Runs the test suite on this machine: installs what it needs (scripts/setup.sh),
# builds, then `pnpm test` (vitest run). Extra arguments go to vitest, e.g.
#   bash scripts/test.sh test/roundtrip.test.ts
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
exec pnpm test "$@"
