#!/bin/bash
# Checks a restored benchmark variant (bench/variants.sh) against the image it was backed up from.
#
#   bash bench/verify-variant.sh lvmxfs RESTORED ORIGINAL
#        the LVM metadata read from both (lvs --segments) equal; xfs_repair -n of the root LV
#        (a read-only loop device at its offset); the swap LV's header (blkid: type, UUID, label)
#        equal; the root LV mounted read-only (norecovery, nouuid) and its manifest equal
#   bash bench/verify-variant.sh btrfs RESTORED ORIGINAL
#        btrfs check --readonly; mounted read-only (top level: both subvolumes); manifest equal
#
# The manifest (every entry's type, mode, owner, links, size, mtime, symlink target and every
# file's b3sum) of ORIGINAL was written by variants.sh next to it (NAME.manifest), so the
# original is never mounted here. Free space restores as zeros in mode used, hence no cmp.
# Prints one line "OK <method> (N files identical)" or "FAILED <method>: <reason>"; exit 0/1.
# Loop devices and the mount made here are undone on exit, each by its exact name.
set -uo pipefail
kind=${1:?kind}; restored=${2:?restored image}; original=${3:?original image}
manifest_file=${original%.img}.manifest
[ -f "$manifest_file" ] || { echo "FAILED manifest: $manifest_file is missing"; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-verify-variant.XXXXXX")
loops=(); mounted=
cleanup() {
  [ -n "$mounted" ] && { umount "$mounted" 2>/dev/null || echo "verify: could not unmount $mounted" >&2; }
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || echo "verify: could not detach $l" >&2; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export LVM_SUPPRESS_FD_WARNINGS=1

attach() { # FILE [OFFSET SIZE]: a read-only loop device into $dev
  if [ $# -ge 3 ]; then dev=$(losetup -r -f --show -o "$2" --sizelimit "$3" "$1"); else dev=$(losetup -r -f --show "$1"); fi || return 1
  loops+=("$dev")
}
fail() { echo "FAILED $method: $*"; exit 1; }
manifest() { # same as variants.sh
  (cd "$1" && find . \( -type f -printf '%y %m %U %G %n %s %T@ %p\n' \) -o \( ! -type f -printf '%y %m %U %G %T@ %p -> %l\n' \) | LC_ALL=C sort
   cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r b3sum)
}
compare_tree() {
  manifest "$work/m" > "$work/restored.manifest"
  if ! diff "$manifest_file" "$work/restored.manifest" > "$work/diff"; then
    head -20 "$work/diff" >&2
    fail "$(grep -c '^[<>]' "$work/diff") manifest line(s) differ, first: $(grep -m1 '^[<>]' "$work/diff")"
  fi
  echo "OK $method ($(grep -c '^f ' "$manifest_file") files identical)"
}
segments() { # IMAGE: the VG's LVs and segments as LVM reads them (runs in a subshell: detaches its own loop device)
  local d out rc
  d=$(losetup -r -f --show "$1") || return 1
  out=$(lvs --devices "$d" --noheadings --segments --units b -o vg_name,lv_name,lv_uuid,seg_start_pe,seg_size_pe,seg_pe_ranges,lv_size 2>/dev/null); rc=$?
  losetup -d "$d"
  [ $rc -eq 0 ] && echo "${out//$d/PV}"
}

case $kind in
  lvmxfs)
    method="lvs + xfs_repair -n + swap header + mount ro + manifest"
    read -r root_off root_size swap_off swap_size < "$(dirname "$original")/lvmxfs.layout" || fail "no lvmxfs.layout"
    a=$(segments "$original") && b=$(segments "$restored") || fail "lvs could not read the volume group"
    [ -n "$a" ] && [ "$a" = "$b" ] || { diff <(echo "$a") <(echo "$b") >&2; fail "the LVM metadata differs"; }
    attach "$restored" "$swap_off" "$swap_size" || fail "losetup"; s1=$(blkid -p -o export -s TYPE -s UUID -s LABEL "$dev" | grep -v ^DEVNAME=)
    attach "$original" "$swap_off" "$swap_size" || fail "losetup"; s2=$(blkid -p -o export -s TYPE -s UUID -s LABEL "$dev" | grep -v ^DEVNAME=)
    [[ "$s1" == *TYPE=swap* ]] && [ "$s1" = "$s2" ] || fail "swap header: restored '${s1//$'\n'/ }', original '${s2//$'\n'/ }'"
    attach "$restored" "$root_off" "$root_size" || fail "losetup"
    xfs_repair -n "$dev" > "$work/repair" 2>&1 || { tail -20 "$work/repair" >&2; fail "xfs_repair -n: the restored XFS is not clean"; }
    mkdir -p "$work/m"; mount -t xfs -o ro,norecovery,nouuid "$dev" "$work/m" || fail "mount"; mounted=$work/m
    compare_tree ;;
  btrfs)
    method="btrfs check + mount ro + manifest"
    btrfs check --readonly "$restored" > "$work/check" 2>&1 || { tail -20 "$work/check" >&2; fail "btrfs check: the restored Btrfs is not clean"; }
    attach "$restored" || fail "losetup"
    mkdir -p "$work/m"; mount -t btrfs -o ro "$dev" "$work/m" || fail "mount"; mounted=$work/m
    compare_tree ;;
  *) echo "FAILED: unknown variant $kind"; exit 1 ;;
esac
