#!/usr/bin/env bash
# The cairn demo: makes a sample ext4 volume, backs it up to a local repository
# (twice, to show deduplication), restores it and verifies the result.
#
#   bash scripts/demo.sh        (or: pnpm demo)
#
# Works on a fresh machine: it runs scripts/setup.sh first. Everything happens in
# demo/ at the repository root (gitignored), which is cleaned at the start, so the
# demo can be run again and again. Exits non-zero on any failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO=$ROOT/demo
SIZE_MIB=64

bold=; dim=; reset=
if [[ -t 1 ]]; then bold=$'\e[1m'; dim=$'\e[2m'; reset=$'\e[0m'; fi
step=0
current="set-up"
say() { step=$((step + 1)); current="[$step] $*"; printf '\n%s[%d] %s%s\n' "$bold" "$step" "$*" "$reset"; }
# Shows a command (on stderr, so that stdout can be redirected) and runs it.
show() { printf '%s$ %s%s\n' "$dim" "$*" "$reset" >&2; "$@"; }
trap 'rc=$?; ((rc == 0)) || printf "\ndemo FAILED (exit %d) in step %s\n" "$rc" "$current" >&2' EXIT

printf '%scairn demo%s: set-up check\n' "$bold" "$reset"
bash "$ROOT/scripts/setup.sh"

cairn() { node "$ROOT/packages/core/bin/cairn.js" "$@"; }
# Prints one field of a JSON object read on stdin.
field() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s)[process.argv[1]];console.log(v)})' "$1"; }
human() { numfmt --to=iec-i --suffix=B --format='%.1f' "$1"; }

# ---------------------------------------------------------------------------
say "Preparing $DEMO (cleaned first) and a folder of sample files"
rm -rf "$DEMO"
mkdir -p "$DEMO/files/docs" "$DEMO/files/data" "$DEMO/files/empty-dir"
cd "$DEMO"
# Text: packages' documentation from this machine, up to about 12 MiB.
for d in /usr/share/doc/*/; do
  cp -r "$d" files/docs/ 2>/dev/null || true
  (($(du -sk files/docs | cut -f1) < 12288)) || break
done
printf 'Hello from the cairn demo, made on %s.\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > files/README.txt
# Random bytes: incompressible data.
head -c 8M /dev/urandom > files/data/random-8M.bin
head -c 100K /dev/urandom > files/data/random-100K.bin
ln -s README.txt files/link-to-readme
printf '   %s files, %s in total, plus an empty directory and a symlink\n' \
  "$(find files -type f | wc -l)" "$(du -sh --apparent-size files | cut -f1)"

say "Making a ${SIZE_MIB} MiB ext4 volume from that folder (mkfs.ext4 -d)"
show truncate -s "${SIZE_MIB}M" disk.img
show mkfs.ext4 -q -F -L cairn-demo -d files disk.img
show e2fsck -fn disk.img >/dev/null
printf '   disk.img: %s apparent size, %s allocated on disk\n' \
  "$(du -h --apparent-size disk.img | cut -f1)" "$(du -h disk.img | cut -f1)"

say "Writing the job file demo/job.json"
# $schema: the schema `pnpm build` generated (relative to this file), for completion in editors.
cat > job.json <<'EOF'
{
  "$schema": "../node_modules/@cairn/core/job.schema.json",
  "name": "demo",
  "source": { "type": "volume", "path": "disk.img", "mode": "used" },
  "compression": { "type": "zstd", "level": 3 },
  "target": { "type": "local", "path": "./repo" },
  "password": { "env": "CAIRN_PASSWORD" }
}
EOF
cat job.json
# The repository password comes from the environment, never from the job file.
export CAIRN_PASSWORD=cairn-demo-password
printf '   CAIRN_PASSWORD is set for the demo\n'

say "cairn validate: check the job file against the schema"
show cairn validate job.json

say "cairn init: create an encrypted repository in demo/repo"
show cairn init job.json

say "cairn backup: the first, full backup of disk.img"
show cairn backup job.json --json > backup1.json
cat backup1.json; echo
added1=$(field bytesAdded < backup1.json)
printf '   read %s, stored %s (only the blocks ext4 uses, compressed with zstd)\n' \
  "$(human "$(field bytesRead < backup1.json)")" "$(human "$added1")"

say "cairn backup again: the volume has not changed, so deduplication stores (almost) nothing"
show cairn backup job.json --json > backup2.json
cat backup2.json; echo
added2=$(field bytesAdded < backup2.json)
printf '   second backup added %s bytes (%s of the first backup'"'"'s %s bytes)\n' \
  "$added2" "$(node -p "($added2 / $added1 * 100).toFixed(3) + '%'")" "$added1"

say "cairn snapshots: list what the repository holds"
show cairn snapshots job.json

say "cairn show latest: the layout of the newest snapshot"
show cairn show job.json latest
printf '   repository size on disk: %s\n' "$(du -sh repo | cut -f1)"

say "cairn restore latest: write the newest snapshot to demo/restored.img"
show cairn restore job.json latest --to restored.img

say "Comparing the restored image with the original, byte for byte (free space was never written, so it is zeros in both)"
show cmp disk.img restored.img
printf '   identical\n'

say "The digest the snapshot recorded, checked with standard tools (split, b3sum) on the restored image"
read -r recorded chunk_size < <(cairn show job.json latest --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const m=JSON.parse(s);console.log(m.imageDigest.hex, m.chunkSize)})')
printf '   recorded in the snapshot (blake3-chunks): %s\n' "$recorded"
printf "   \$ split -b %s --filter='b3sum --no-names' restored.img | b3sum --no-names\n" "$chunk_size"
computed=$(split -b "$chunk_size" --filter='b3sum --no-names' restored.img | b3sum --no-names)
printf '   computed from restored.img:               %s\n' "$computed"
[[ $computed == "$recorded" ]]

say "e2fsck -fn on the restored image: the filesystem is clean"
show e2fsck -fn restored.img

say "cairn check --read-data: decrypt and verify every byte in the repository"
show cairn check job.json --read-data

printf '\n%sdemo OK%s: backed up, deduplicated, restored and verified %s (files in %s)\n' \
  "$bold" "$reset" "disk.img" "$DEMO"
