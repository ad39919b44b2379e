#!/usr/bin/env bash
# Prepares this Debian host to cross-build agentd for ARCH (arm64 or armhf): installs the
# cross compiler, qemu-user-static and the target's -dev libraries, then prints the sysroot
# to hand to the toolchain file (-DAGENTD_SYSROOT=...) as the last line on stdout.
#
# Usage: cross/prepare-sysroot.sh ARCH [--method auto|multiarch|mmdebstrap] [--refresh]
#
# Two ways to get the target's libraries:
#   multiarch   dpkg --add-architecture ARCH and apt-get install lib...-dev:ARCH on this host;
#               the sysroot is "/". Only used when apt's simulation shows that nothing of
#               the host gets removed (Multi-Arch: same packages must match the host's
#               versions, so apt may upgrade host libraries to the same Debian release).
#   mmdebstrap  an extracted Debian tree (mmdebstrap --variant=extract) in
#               $AGENTD_SYSROOT_CACHE/ARCH (default /var/cache/agentd-sysroot/ARCH); nothing
#               of the host changes. Reused while the package list and suite are unchanged;
#               --refresh rebuilds it (e.g. to pick up security updates).
# auto (the default) is multiarch for arm64, falling back to mmdebstrap if apt would remove
# anything; mmdebstrap for armhf, so the host's apt tracks one foreign architecture at most
# (each one adds its indexes to every apt-get update, and a broken one fails them all).
# Runs as root; does nothing (and needs no network) when everything is in place already.
set -euo pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

arch="${1:-}"
shift || true
method=auto
refresh=0
while [ $# -gt 0 ]; do
  case "$1" in
    --method) method="${2:?--method needs a value}"; shift 2 ;;
    --refresh) refresh=1; shift ;;
    *) usage ;;
  esac
done

case "$arch" in
  arm64) triple=aarch64-linux-gnu; qemu_arch=aarch64 ;;
  armhf) triple=arm-linux-gnueabihf; qemu_arch=arm ;;
  *) usage ;;
esac
case "$method" in
  auto) [ "$arch" = arm64 ] && method=multiarch-or-mmdebstrap || method=mmdebstrap ;;
  multiarch | mmdebstrap) ;;
  *) usage ;;
esac

cache="${AGENTD_SYSROOT_CACHE:-/var/cache/agentd-sysroot}"
mirror="${AGENTD_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security_mirror="${AGENTD_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
# shellcheck source=/dev/null
suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"

# The target libraries agentd links (CMakeLists.txt) and the stand-in hub the unit tests link.
target_pkgs=(libcurl4-openssl-dev libcjson-dev libsystemd-dev libssl-dev libcpp-httplib-dev)
# An extracted tree also needs what a multiarch host already has: the C library, the C++
# runtime for running the tests under qemu, and doctest (Architecture: all, headers + CMake).
sysroot_extra_pkgs=(libc6-dev libstdc++6 libgcc-s1 doctest-dev)

log() { echo "prepare-sysroot($arch): $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  echo "prepare-sysroot: run as root (installs packages, writes $cache)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

apt_updated=0
apt_update() {
  [ "$apt_updated" = 1 ] && return
  log "apt-get update"
  apt-get update -qq >&2
  apt_updated=1
}

# Installs the packages not yet installed (the pattern of tests/install-deps.sh).
install_missing() {
  local missing=() p
  for p in "$@"; do installed "$p" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return
  apt_update
  log "installing ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# Host tools: the Debian cross compiler and binutils, qemu for running the tests, the build tools.
host_pkgs=("g++-$triple" "binutils-$triple" qemu-user-static cmake ninja-build pkg-config groff-base)

# multiarch: returns 1 (leaving the host as it was) if apt cannot fetch the ARCH indexes or
# would have to remove anything.
try_multiarch() {
  local pkgs=() p added=0 have_all=1 sim
  for p in "${target_pkgs[@]}"; do pkgs+=("$p:$arch"); done
  if dpkg --print-foreign-architectures | grep -qx "$arch"; then
    for p in "${pkgs[@]}"; do installed "$p" || have_all=0; done
    [ "$have_all" = 1 ] && { log "multiarch: ${pkgs[*]} installed"; return 0; }
  else
    log "multiarch: dpkg --add-architecture $arch"
    dpkg --add-architecture "$arch"
    added=1
    apt_updated=0
  fi
  undo() {
    if [ "$added" = 1 ]; then
      log "multiarch: dpkg --remove-architecture $arch"
      dpkg --remove-architecture "$arch"
      apt-get update -qq >&2 || true
    fi
  }
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    # A failing index of the new architecture would fail every later apt-get update here.
    apt-get update -qq >&2 || { log "multiarch: apt-get update failed"; undo; return 1; }
    apt_updated=1
  fi
  # Simulate first: Multi-Arch: same packages must have the host's version of the same
  # package, which apt may only reach by removing something on the host. Refuse that.
  if ! sim="$(apt-get install -s --no-install-recommends "${pkgs[@]}" 2>&1)" ||
    grep -q '^Remv ' <<<"$sim"; then
    log "multiarch: apt would remove host packages or cannot resolve; not using it:"
    grep -E '^Remv |^E: |broken' <<<"$sim" | sed 's/^/  /' >&2 || true
    undo
    return 1
  fi
  log "multiarch: installing ${pkgs[*]} ($(grep -c '^Inst ' <<<"$sim") packages, of which" \
    "$(grep -cE '^Inst [^ ]+ \[' <<<"$sim" || true) host upgrades within $suite, 0 removals)"
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
}

# An extracted tree has no dpkg database, so dpkg-shlibdeps (CPack's DEB Depends) could not
# tell which package ships a library nor read its symbols file. Record, for each extracted
# .deb, its control fields, its file list (with the tree's final paths, which is where
# dpkg-shlibdeps finds the libraries) and its symbols/shlibs files. cross/build.sh points
# DPKG_ADMINDIR here when it packages; dpkg never installs anything into this tree.
record_packages() {
  local tree="$1" final="$2" db="$1/var/lib/dpkg" deb name ctl f
  mkdir -p "$db/info"
  : >"$db/status"
  echo 1 >"$db/info/format" # the layout that names Multi-Arch: same packages' files pkg:arch
  for deb in "$tree"/var/cache/apt/archives/*.deb; do
    name="$(dpkg-deb -f "$deb" Package)"
    # dpkg names the files of Multi-Arch: same packages pkg:arch.
    [ "$(dpkg-deb -f "$deb" Multi-Arch)" = same ] && name="$name:$(dpkg-deb -f "$deb" Architecture)"
    { dpkg-deb -f "$deb"; echo "Status: install ok installed"; echo; } >>"$db/status"
    dpkg-deb --fsys-tarfile "$deb" | tar -t | sed -e "s|^\./|$final/|" -e 's|/$||' \
      -e "s|^\.\$|$final|" >"$db/info/$name.list"
    ctl="$(mktemp -d)"
    dpkg-deb -e "$deb" "$ctl"
    for f in symbols shlibs; do
      [ -f "$ctl/$f" ] && cp "$ctl/$f" "$db/info/$name.$f"
    done
    rm -rf "$ctl"
  done
}

# mmdebstrap: an extracted tree, built beside the old one and swapped in when complete.
build_extracted_sysroot() {
  local dir="$cache/$arch" stamp want tmp link target
  # Bump format= when the layout of the tree changes, so old trees get rebuilt.
  want="format=2 arch=$arch suite=$suite mirror=$mirror packages=${target_pkgs[*]} ${sysroot_extra_pkgs[*]}"
  stamp="$dir/.agentd-sysroot"
  if [ "$refresh" = 0 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "mmdebstrap: reusing $dir"
    echo "$dir"
    return
  fi
  install_missing mmdebstrap
  mkdir -p "$cache"
  tmp="$cache/.$arch.new"
  rm -rf "$tmp"
  log "mmdebstrap: extracting ${target_pkgs[*]} ${sysroot_extra_pkgs[*]} and their dependencies into $dir"
  # extract: unpack only (no maintainer scripts), so no emulation is needed and nothing runs.
  local pkgs_csv
  pkgs_csv="$(IFS=,; echo "${target_pkgs[*]},${sysroot_extra_pkgs[*]}")"
  extract() {
    rm -rf "$tmp"
    mmdebstrap --quiet --mode=root --variant=extract --architectures="$arch" \
      --skip=cleanup/apt/cache --include="$pkgs_csv" "$suite" "$tmp" "$@" >&2
  }
  local base=("deb $mirror $suite main" "deb $mirror $suite-updates main")
  if ! extract "${base[@]}" "deb $security_mirror $suite-security main"; then
    # A mirror whose security index is out of step with its InRelease fails the whole run;
    # the libraries' ABI does not change with security updates, so build without them.
    log "mmdebstrap: WARNING: failed with $suite-security included; retrying without it" \
      "(the sysroot then lacks security updates; --refresh later to retry)"
    extract "${base[@]}"
  fi
  # Debian packages hold some absolute symlinks (/usr/lib/TRIPLE/libfoo.so -> /lib/...);
  # make them relative so they resolve inside the tree, not on the host.
  while IFS= read -r -d '' link; do
    target="$(readlink "$link")"
    ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$tmp$target")" "$link"
  done < <(find "$tmp" -type l -lname '/*' -print0)
  record_packages "$tmp" "$dir"
  # Drop what a sysroot does not need (downloaded .debs, apt lists, docs).
  rm -rf "$tmp/var/cache/apt" "$tmp/var/lib/apt/lists" "$tmp/usr/share/doc" \
    "$tmp/usr/share/man" "$tmp/usr/share/locale"
  echo "$want" >"$tmp/.agentd-sysroot"
  rm -rf "$dir.old"
  [ -e "$dir" ] && mv "$dir" "$dir.old"
  mv "$tmp" "$dir"
  rm -rf "$dir.old"
  echo "$dir"
}

install_missing "${host_pkgs[@]}"
for tool in "$triple-g++" "$triple-strip" "qemu-$qemu_arch-static"; do
  command -v "$tool" >/dev/null || { echo "prepare-sysroot: $tool not found after install" >&2; exit 1; }
done

case "$method" in
  multiarch)
    try_multiarch || { echo "prepare-sysroot: multiarch not usable for $arch (see above)" >&2; exit 1; }
    echo /
    ;;
  multiarch-or-mmdebstrap)
    if try_multiarch; then echo /; else build_extracted_sysroot; fi
    ;;
  mmdebstrap) build_extracted_sysroot ;;
esac
