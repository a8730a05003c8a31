#!/usr/bin/env bash
# Installs everything cairn needs on a fresh Debian machine with Node 20 + npm,
# then installs the workspace dependencies and builds it. Idempotent: a second
# run only checks, and `apt-get update` runs only when a package is missing.
#
#   bash scripts/setup.sh            (or: pnpm run setup; plain `pnpm setup` is a pnpm built-in)
#
# Quiet on success (one line per step); on failure prints the failing step's
# output and exits non-zero. Set CAIRN_SETUP_VERBOSE=1 to see everything.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# Debian packages the tests and the demo use (names checked with apt-cache policy
# on Debian 12): filesystem and partition tools, zstd, b3sum (checks a snapshot's image
# digest the way a user would), an SSH server for the SFTP tests, fusepy for the FUSE file
# system that serves images with unreadable sectors (test/fixtures/faulty-fuse), systemd for
# systemd-analyze (checks the service's unit file offline; systemd need not run); NBD clients
# for cairn serve, mount and export (libnbd-bin: nbdinfo, nbdcopy, nbdfuse; qemu-utils: qemu-img,
# qemu-io), fusefat (FAT without the kernel's vfat); mmdebstrap, qemu-system-x86 and ovmf for the
# Debian system disk `cairn boot` runs (test/boot.test.ts); acl, attr and rsync to compare a
# restored file tree with the original independently of cairn (getfacl, getfattr, rsync -aHAX);
# xfsprogs, lvm2, cryptsetup-bin and partclone for the XFS, Btrfs, LVM, LUKS and swap used-block
# maps and resizing restores (partclone's used-block restore is the independent reference);
# chromium for the dashboard's browser tests (driven by puppeteer-core, nothing downloaded).
APT_PACKAGES=(e2fsprogs xfsprogs lvm2 cryptsetup-bin partclone chromium acl attr rsync util-linux fdisk gdisk dosfstools mtools ntfs-3g btrfs-progs zstd b3sum openssh-server openssh-client ceph-mon ceph-osd ceph-base ceph-common radosgw python3-fusepy systemd libnbd-bin fusefat qemu-utils mmdebstrap qemu-system-x86 ovmf)
PNPM_DEFAULT=12.4.2
NODE_MIN_MAJOR=20

VERBOSE=${CAIRN_SETUP_VERBOSE:-0}
LOG=$(mktemp -t cairn-setup.XXXXXX)
trap 'rm -f "$LOG"' EXIT

say() { printf 'setup: %s\n' "$*"; }
die() {
  printf '\nsetup: FAILED: %s\n' "$1" >&2
  if [[ -s $LOG ]]; then
    printf -- '---- last lines of its output ----\n' >&2
    tail -n 40 "$LOG" >&2
    printf -- '----------------------------------\n' >&2
  fi
  exit 1
}
# run "what it does" cmd...: output goes to the log (or the terminal when verbose)
run() {
  local what=$1; shift
  : >"$LOG"
  if [[ $VERBOSE == 1 ]]; then
    "$@" 2>&1 | tee "$LOG" || die "$what (command: $*)"
  else
    "$@" >"$LOG" 2>&1 || die "$what (command: $*)"
  fi
}

SUDO=()
if [[ $(id -u) != 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); fi
fi

# ---- 1. Debian packages -------------------------------------------------------
installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }

missing=()
for p in "${APT_PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
# zstd-napi is compiled from source by node-gyp: it needs a C++ compiler, make and python3.
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v python3 >/dev/null 2>&1 || missing+=(python3)

if ((${#missing[@]})); then
  command -v apt-get >/dev/null 2>&1 || die "missing packages (${missing[*]}) and no apt-get on this machine; install them by hand"
  if [[ $(id -u) != 0 && ${#SUDO[@]} == 0 ]]; then
    die "missing packages (${missing[*]}); run this script as root (or with passwordless sudo) to install them"
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  run "apt-get update" "${SUDO[@]}" apt-get update -q
  # Names that the package lists do not know are reported clearly, before apt fails on them.
  for p in "${missing[@]}"; do
    cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
    [[ -n $cand && $cand != "(none)" ]] || die "Debian package '$p' is not available from the configured apt sources"
  done
  run "apt-get install ${missing[*]}" "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
  say "Debian packages installed"
else
  say "Debian packages present"
fi

# ---- 2. Node and pnpm ---------------------------------------------------------
command -v node >/dev/null 2>&1 || die "node is not installed; cairn needs Node ${NODE_MIN_MAJOR} or newer"
node_major=$(node -p 'process.versions.node.split(".")[0]')
((node_major >= NODE_MIN_MAJOR)) || die "node $(node -v) is too old; cairn needs Node ${NODE_MIN_MAJOR} or newer"

# The pnpm version pinned by package.json's packageManager field (corepack does not work here).
want_pnpm=$(node -p "(require('./package.json').packageManager || '').match(/^pnpm@([^+]+)/)?.[1] || '$PNPM_DEFAULT'")
have_pnpm=$(pnpm --version 2>/dev/null || true)
if [[ $have_pnpm != "$want_pnpm" ]]; then
  say "installing pnpm ${want_pnpm} with npm (found: ${have_pnpm:-none})"
  run "npm install -g pnpm@${want_pnpm}" "${SUDO[@]}" npm install -g --no-fund --no-audit "pnpm@${want_pnpm}"
  hash -r
  have_pnpm=$(pnpm --version 2>/dev/null || true)
  [[ $have_pnpm == "$want_pnpm" ]] || die "pnpm ${want_pnpm} was installed but \`pnpm --version\` says '${have_pnpm}' (check PATH: $(command -v pnpm || echo 'pnpm not on PATH'))"
fi
say "node $(node -v), pnpm ${have_pnpm}"

# ---- 3. Workspace dependencies and build ----------------------------------------
# Native modules (zstd-napi) compile against the local Node headers when they exist.
if [[ -d /usr/include/node && -z ${npm_config_nodedir:-} ]]; then export npm_config_nodedir=/usr; fi
# Never ask whether node_modules may be rebuilt (there is no terminal in CI).
export npm_config_confirm_modules_purge=false

if [[ -f pnpm-lock.yaml ]]; then
  run "pnpm install --frozen-lockfile (if the lockfile is out of date with package.json, run \`pnpm install\` and commit pnpm-lock.yaml)" \
    pnpm install --frozen-lockfile
else
  run "pnpm install" pnpm install
fi
say "dependencies installed"

run "pnpm build (TypeScript errors are shown above)" pnpm build
say "build OK"
