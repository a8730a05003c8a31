#!/bin/bash
# Checks a restored ext4 image against the image it was backed up from.
#
#   bash bench/verify-restore.sh exact RESTORED ORIGINAL   byte for byte (cmp)
#   bash bench/verify-restore.sh used  RESTORED ORIGINAL   free space restores as zeros, so:
#        e2fsck -fn on the restored image, then both images attached read-only to loop
#        devices and mounted read-only (noload: no journal replay), every file compared
#        (diff -r --no-dereference) and every inode's type, mode, owner, size, mtime and
#        symlink target compared (find -printf). Without loop devices (not root, or none
#        free) the trees are extracted with debugfs rdump instead.
#
# Prints one line "OK <method>" or "FAILED <method>: <reason>" (details on stderr); exit 0/1.
# The loop devices this script attached and the mounts it made are always undone (trap),
# each by its exact name.
set -uo pipefail
mode=${1:?mode}; restored=${2:?restored image}; original=${3:?original image}

if [ "$mode" = exact ]; then
  if cmp "$restored" "$original" >&2; then echo "OK cmp"; exit 0; fi
  echo "FAILED cmp: the images differ"; exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-verify.XXXXXX")
mounts=(); loops=()
cleanup() {
  local m l
  for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "verify: could not unmount $m" >&2; done
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || echo "verify: could not detach $l" >&2; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! out=$(e2fsck -fn "$restored" 2>&1); then
  printf '%s\n' "$out" | tail -20 >&2
  echo "FAILED e2fsck -fn: the restored filesystem is not clean"; exit 1
fi

# Attaches $1 read-only and mounts it at $2; returns non-zero if that is not possible here.
attach() {
  local dev
  dev=$(losetup -r -f --show "$1" 2>/dev/null) || return 1
  loops+=("$dev")
  mkdir -p "$2"
  mount -t ext4 -o ro,noload "$dev" "$2" 2>/dev/null || return 1
  mounts+=("$2")
}

method="e2fsck -fn + loop mount ro + diff -r"
if [ "$(id -u)" -ne 0 ] || ! attach "$restored" "$work/r" || ! attach "$original" "$work/o"; then
  # Undo a half-done attach before falling back.
  for m in "${mounts[@]}"; do umount "$m" 2>/dev/null; done; mounts=()
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null; done; loops=()
  method="e2fsck -fn + debugfs rdump + diff -r"
  mkdir -p "$work/r" "$work/o"
  debugfs -R "rdump / $work/r" "$restored" >/dev/null 2>&1 || { echo "FAILED $method: debugfs rdump of the restored image"; exit 1; }
  debugfs -R "rdump / $work/o" "$original" >/dev/null 2>&1 || { echo "FAILED $method: debugfs rdump of the original image"; exit 1; }
fi

if ! diff -rq --no-dereference "$work/o" "$work/r" >"$work/diff" 2>&1; then
  head -20 "$work/diff" >&2
  echo "FAILED $method: $(wc -l < "$work/diff") difference(s), first: $(head -1 "$work/diff")"; exit 1
fi
meta() { (cd "$1" && find . -printf '%y %m %U %G %s %T@ %p -> %l\n' | LC_ALL=C sort); }
if ! diff <(meta "$work/o") <(meta "$work/r") >"$work/meta" 2>&1; then
  head -20 "$work/meta" >&2
  echo "FAILED $method: file metadata differs, first: $(sed -n 2p "$work/meta")"; exit 1
fi
files=$(cd "$work/o" && find . -type f | wc -l)
echo "OK $method ($files files identical)"
