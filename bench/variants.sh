#!/bin/bash
# Builds issue 17's benchmark variants of the corpus volume in CORPUS (default /tmp/cairn-corpus),
# from the files of sysvol.img (and, for the "day later" images, sysvol2.img), each disk first
# filled with random data, so free space holds stale data as on the ext4 corpus volume:
#
#   lvmxfs.img / lvmxfs2.img   a whole-disk LVM2 physical volume, as RHEL installs it: VG "rhel",
#                              LV "root" (XFS, the size of sysvol.img) then LV "swap" (256 MiB,
#                              mkswap; the rest of it stale "memory"), 256 MiB of extents
#                              unallocated (on volumes under 2 GiB: an eighth of it each).
#                              The LVs are laid out by vgcfgrestore (no device-mapper here: nothing
#                              is activated); mkfs.xfs and mount go through a loop device at the
#                              root LV's offset (losetup -o OFF --sizelimit SIZE).
#   btrfs.img / btrfs2.img     mkfs.btrfs on a disk the size of sysvol.img, as Fedora lays it out:
#                              subvolumes "root" (the corpus's /usr) and "home" (/home).
#
# The "day later" image is a copy of the first with sysvol2.img's files synced in (rsync -aH
# --checksum --delete --inplace: new, edited and deleted files, as corpus.sh's day of use) and, in the swap
# LV, 32 MiB of new stale memory (at most half of it). Alongside: NAME.manifest (every entry's type, mode, owner,
# links, size, mtime, symlink target, and every file's b3sum: what a restore must reproduce)
# and lvmxfs.layout (offsets in bytes: root_offset root_size swap_offset swap_size).
#
#   bash bench/variants.sh [CORPUS] [lvmxfs|btrfs]...   (root: loop devices and mounts)
#
# Rebuilt only when missing (NAME.done). Loop devices and mounts made here are undone on exit,
# each by its exact name.
set -euo pipefail
CORPUS=${1:-/tmp/cairn-corpus}; shift || true
KINDS=("$@"); [ ${#KINDS[@]} -gt 0 ] || KINDS=(lvmxfs btrfs)
[ -f "$CORPUS/sysvol.img" ] && [ -f "$CORPUS/sysvol2.img" ] || { echo "variants: no sysvol.img/sysvol2.img in $CORPUS" >&2; exit 1; }
MIB=$((1024 * 1024))
export LVM_SUPPRESS_FD_WARNINGS=1
VOL=$(stat -c %s "$CORPUS/sysvol.img")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-variants.XXXXXX")
mounts=(); loops=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[i]}" 2>/dev/null || echo "variants: could not unmount ${mounts[i]}" >&2; done
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# attach FILE [OFFSET SIZE] → prints the loop device (and remembers it for cleanup)
attach() {
  local dev
  if [ $# -ge 3 ]; then dev=$(losetup -f --show -o "$2" --sizelimit "$3" "$1"); else dev=$(losetup -f --show "$1"); fi
  loops+=("$dev"); echo "$dev"
}
detach() { losetup -d "$1"; local k; for k in "${!loops[@]}"; do [ "${loops[k]}" = "$1" ] && unset 'loops[k]'; done; loops=("${loops[@]}"); }
mnt() { mkdir -p "$2"; mount "${@:3}" "$1" "$2"; mounts+=("$2"); }
umnt() { sync; umount "$1"; unset 'mounts[${#mounts[@]}-1]'; mounts=("${mounts[@]}"); }
# The corpus volume's files, read-only (noload: no journal replay on the cached image).
mount_corpus() { local d; d=$(attach "$1"); mnt "$d" "$WORK/src" -t ext4 -o ro,noload; SRCDEV=$d; }
umount_corpus() { umnt "$WORK/src"; detach "$SRCDEV"; }
# Stale data: the whole disk random before anything is laid out on it.
stale() { rm -f "$1"; head -c "$2" /dev/urandom > "$1"; }
manifest() {
  (cd "$1" && find . \( -type f -printf '%y %m %U %G %n %s %T@ %p\n' \) -o \( ! -type f -printf '%y %m %U %G %T@ %p -> %l\n' \) | LC_ALL=C sort
   cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r b3sum)
}
SYNC=(rsync -aH --exclude=/lost+found)
# --checksum: a file changed within the same second at the same size (as in the test's small
# corpus) would pass rsync's size-and-mtime check and keep the first day's content.
DAY=(rsync -aH --checksum --delete --inplace --exclude=/lost+found)

# ------------------------------------------------------------------ LVM2 + XFS
# Swap and the unallocated extents: 256 MiB each on the 4 GiB corpus, an eighth of the root LV on
# smaller volumes (--quick, the test), in whole extents.
EXTENT=$((4 * MIB)); SWAP=$(( (VOL / 8 < 256 * MIB ? VOL / 8 : 256 * MIB) / EXTENT * EXTENT )); SPARE=$SWAP
lvm_layout() { # DEV: VG rhel with LVs root (first) and swap, laid out by vgcfgrestore
  local dev=$1 meta=$WORK/rhel.vg root_ext=$((VOL / EXTENT)) swap_ext=$((SWAP / EXTENT))
  pvcreate -q -ff -y --devices "$dev" -u bEnch1-0000-0000-0000-0000-0000-0pv001 --norestorefile "$dev" >&2
  vgcreate -q --devices "$dev" -s 4m rhel "$dev" >&2
  vgcfgbackup -q --devices "$dev" -f "$meta" rhel >&2
  # The VG's closing brace is the file's last line: the LVs go before it.
  sed -i '$d' "$meta"
  cat >> "$meta" <<EOF
	logical_volumes {
		root {
			id = "bEnch1-root-0000-0000-0000-0000-0root1"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			creation_time = 1767225600
			creation_host = "bench"
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = $root_ext
				type = "striped"
				stripe_count = 1
				stripes = ["pv0", 0]
			}
		}
		swap {
			id = "bEnch1-swap-0000-0000-0000-0000-0swap1"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			creation_time = 1767225600
			creation_host = "bench"
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = $swap_ext
				type = "striped"
				stripe_count = 1
				stripes = ["pv0", $root_ext]
			}
		}
	}
}
EOF
  vgcfgrestore -q --devices "$dev" -f "$meta" rhel >&2
  vgck --devices "$dev" rhel >&2
  local pe_start; pe_start=$(pvs --devices "$dev" --noheadings --units b --nosuffix -o pe_start "$dev" 2>/dev/null | tr -d ' ')
  echo "$pe_start $((root_ext * EXTENT)) $((pe_start + root_ext * EXTENT)) $((swap_ext * EXTENT))"
}

build_lvmxfs() {
  local img=$CORPUS/lvmxfs.img img2=$CORPUS/lvmxfs2.img dev root swap layout
  rm -f "$CORPUS"/lvmxfs*.done
  # PV metadata area (1 MiB) + root + swap + unallocated extents.
  stale "$img" $((MIB + VOL + SWAP + SPARE))
  dev=$(attach "$img"); layout=$(lvm_layout "$dev"); detach "$dev"
  read -r ROOT_OFF ROOT_SIZE SWAP_OFF SWAP_SIZE <<< "$layout"
  echo "$ROOT_OFF $ROOT_SIZE $SWAP_OFF $SWAP_SIZE" > "$CORPUS/lvmxfs.layout"
  swap=$(attach "$img" "$SWAP_OFF" "$SWAP_SIZE")
  mkswap -q -L swap -U 0b17b17b-0000-4000-8000-00000000b017 "$swap" >/dev/null; detach "$swap"
  root=$(attach "$img" "$ROOT_OFF" "$ROOT_SIZE")
  mkfs.xfs -q -K -f -L root "$root"   # -K: no discard (on a loop device a discard punches holes)
  mount_corpus "$CORPUS/sysvol.img"
  mnt "$root" "$WORK/dst" -t xfs
  "${SYNC[@]}" "$WORK/src/" "$WORK/dst/"
  sync; manifest "$WORK/dst" > "$CORPUS/lvmxfs.manifest"; df -h "$WORK/dst" | tail -1
  umnt "$WORK/dst"; umount_corpus
  xfs_repair -n "$root" >/dev/null 2>&1 || { echo "variants: xfs_repair -n of lvmxfs.img failed" >&2; exit 1; }
  detach "$root"
  # A day later: sysvol2.img's files, and new stale memory in the swap LV (past its header page).
  cp --sparse=always "$img" "$img2"
  dd if=/dev/urandom of="$img2" bs=1M seek=$(((SWAP_OFF + MIB) / MIB)) count=$((SWAP_SIZE / MIB / 2 < 32 ? SWAP_SIZE / MIB / 2 : 32)) conv=notrunc status=none
  root=$(attach "$img2" "$ROOT_OFF" "$ROOT_SIZE")
  mount_corpus "$CORPUS/sysvol2.img"
  mnt "$root" "$WORK/dst" -t xfs -o nouuid
  "${DAY[@]}" "$WORK/src/" "$WORK/dst/"
  sync; manifest "$WORK/dst" > "$CORPUS/lvmxfs2.manifest"; df -h "$WORK/dst" | tail -1
  umnt "$WORK/dst"; umount_corpus
  xfs_repair -n "$root" >/dev/null 2>&1 || { echo "variants: xfs_repair -n of lvmxfs2.img failed" >&2; exit 1; }
  detach "$root"
  touch "$CORPUS/lvmxfs.done"
}

# ------------------------------------------------------------------ Btrfs
btrfs_copy() { # SRC DST [rsync options]: /usr into subvolume root, /home into subvolume home
  local src=$1 dst=$2; shift 2
  "$@" "$src/usr/" "$dst/root/usr/"
  "$@" "$src/home/" "$dst/home/"
}
build_btrfs() {
  local img=$CORPUS/btrfs.img img2=$CORPUS/btrfs2.img dev
  rm -f "$CORPUS"/btrfs*.done
  stale "$img" "$VOL"
  mkfs.btrfs -q -K -f -L fedora "$img" >/dev/null
  dev=$(attach "$img")
  mount_corpus "$CORPUS/sysvol.img"
  mnt "$dev" "$WORK/dst" -t btrfs
  btrfs -q subvolume create "$WORK/dst/root" >/dev/null; btrfs -q subvolume create "$WORK/dst/home" >/dev/null
  mkdir -p "$WORK/dst/root/usr"
  btrfs_copy "$WORK/src" "$WORK/dst" "${SYNC[@]}"
  sync; manifest "$WORK/dst" > "$CORPUS/btrfs.manifest"; df -h "$WORK/dst" | tail -1
  umnt "$WORK/dst"; umount_corpus; detach "$dev"
  btrfs check --readonly "$img" >/dev/null 2>&1 || { echo "variants: btrfs check of btrfs.img failed" >&2; exit 1; }
  cp --sparse=always "$img" "$img2"
  dev=$(attach "$img2")
  mount_corpus "$CORPUS/sysvol2.img"
  mnt "$dev" "$WORK/dst" -t btrfs
  btrfs_copy "$WORK/src" "$WORK/dst" "${DAY[@]}"
  sync; manifest "$WORK/dst" > "$CORPUS/btrfs2.manifest"; df -h "$WORK/dst" | tail -1
  umnt "$WORK/dst"; umount_corpus; detach "$dev"
  btrfs check --readonly "$img2" >/dev/null 2>&1 || { echo "variants: btrfs check of btrfs2.img failed" >&2; exit 1; }
  touch "$CORPUS/btrfs.done"
}

for k in "${KINDS[@]}"; do
  case $k in
    lvmxfs|btrfs) if [ -f "$CORPUS/$k.done" ]; then echo "variants: reusing $CORPUS/$k.img"; else echo "variants: building $k"; "build_$k"; fi ;;
    *) echo "variants: unknown variant $k (lvmxfs, btrfs)" >&2; exit 2 ;;
  esac
done
ls -ls "$CORPUS"/lvmxfs*.img "$CORPUS"/btrfs*.img 2>/dev/null || true
