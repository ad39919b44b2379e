#!/usr/bin/env bash
# Cross-builds agentd for ARCH (arm64 or armhf) on a Debian 12 x86-64 host, as root:
# prepares the sysroot, builds agentd, agentctl and the unit tests (preset cross-ARCH, in
# build/cross-ARCH), runs the unit tests under qemu-user, reports the stripped size of
# agentd and, when the build has a CPack configuration (packaging/), builds the .deb and .rpm.
#
# Usage: cross/build.sh ARCH [--no-packages] [prepare-sysroot.sh options, e.g. --method mmdebstrap]
# Environment: AGENTD_JOBS (default: nproc), AGENTD_MAX_STRIPPED_BYTES (default 1 MiB: the
# size goal; the build fails above it).
set -euo pipefail
cd "$(dirname "$0")/.."

arch="${1:-}"
shift || true
packages=1
sysroot_opts=()
for a in "$@"; do
  case "$a" in
    --no-packages) packages=0 ;;
    *) sysroot_opts+=("$a") ;;
  esac
done
case "$arch" in
  arm64) triple=aarch64-linux-gnu; rpm_arch=aarch64 ;;
  armhf) triple=arm-linux-gnueabihf; rpm_arch=armv7hl ;;
  *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
preset="cross-$arch"
build="build/$preset"
jobs="${AGENTD_JOBS:-$(nproc)}"
max_bytes="${AGENTD_MAX_STRIPPED_BYTES:-1048576}"

step_start=$SECONDS
step() { # prints the time the previous step took, then the name of the next
  [ -n "${step_name:-}" ] && echo "=== $preset: $step_name took $((SECONDS - step_start)) s"
  step_name="$1"
  step_start=$SECONDS
  [ -n "$1" ] && echo "=== $preset: $1"
  return 0
}

step "prepare sysroot"
sysroot="$(bash cross/prepare-sysroot.sh "$arch" "${sysroot_opts[@]}" | tail -n 1)"
echo "sysroot: $sysroot"

step "configure and build"
# Results of find_package/pkg-config are cached per sysroot: start afresh when it changed.
if [ -f "$build/CMakeCache.txt" ] &&
  ! grep -qxF "AGENTD_SYSROOT:PATH=$sysroot" "$build/CMakeCache.txt"; then
  echo "sysroot changed: removing the old CMake cache in $build"
  rm -rf "$build/CMakeCache.txt" "$build/CMakeFiles"
fi
cmake --preset "$preset" -DAGENTD_SYSROOT="$sysroot" >/dev/null
cmake --build --preset "$preset" -j "$jobs"

step "unit tests under qemu"
ctest --preset "$preset"

step "stripped size"
size_of() { # stripped size in bytes of a target binary, without touching the build tree
  local tmp
  tmp="$(mktemp)"
  "$triple-strip" -o "$tmp" "$1"
  stat -c %s "$tmp"
  rm -f "$tmp"
}
too_big=0
for bin in agentd agentctl; do
  bytes="$(size_of "$build/$bin")"
  printf 'stripped size %-8s %s: %8d bytes (%d KiB)\n' "$bin" "$arch" "$bytes" $(((bytes + 1023) / 1024))
  if [ "$bin" = agentd ] && [ "$bytes" -gt "$max_bytes" ]; then too_big=1; fi
done
if [ "$too_big" = 1 ]; then
  echo "agentd for $arch is larger than $max_bytes bytes stripped" >&2
  exit 1
fi

if [ "$packages" = 1 ]; then
  step "packages"
  # packaging/packaging.cmake (include(CPack)) names the target architecture for cross
  # builds; checked below. In an extracted sysroot dpkg-shlibdeps finds the target's
  # libraries through -l and their packages and symbols files through the dpkg database
  # that prepare-sysroot.sh records there; with multiarch the host's database has them.
  if [ -f "$build/CPackConfig.cmake" ]; then
    # dpkg-shlibdeps (dpkg-dev) and file for the DEB, rpmbuild for the RPM.
    for p in dpkg-dev file rpm; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null
    done
    cpack_env=()
    cpack_defs=()
    if [ "$sysroot" != / ]; then
      cpack_env=(DPKG_ADMINDIR="$sysroot/var/lib/dpkg")
      cpack_defs=(-D "CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS=$sysroot/lib/$triple;$sysroot/usr/lib/$triple")
    fi
    rm -f "$build"/packages/*.deb "$build"/packages/*.rpm
    (cd "$build" && env "${cpack_env[@]}" cpack -G "DEB;RPM" "${cpack_defs[@]}")
    for deb in "$build"/packages/*.deb; do
      [ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || { echo "$deb: not $arch" >&2; exit 1; }
      echo "$deb: Depends: $(dpkg-deb -f "$deb" Depends)"
    done
    for rpm in "$build"/packages/*.rpm; do
      [ "$(rpm -qp --qf '%{ARCH}' "$rpm" 2>/dev/null)" = "$rpm_arch" ] || { echo "$rpm: not $rpm_arch" >&2; exit 1; }
    done
    ls -l "$build"/packages/*.deb "$build"/packages/*.rpm
  else
    echo "no CPack configuration in $build (packaging/ not wired in): no packages built"
  fi
fi
step ""
echo "=== $preset: done in $SECONDS s"
