#!/usr/bin/env bash
# Builds the agentd DEB and RPM packages and checks them with lintian and
# rpmlint. From a clean tree, as root on Debian 12 (missing packages are
# installed with apt).
#
#   bash packaging/build-packages.sh [CMAKE_ARGS...]
#
# e.g. -DAGENTD_PACKAGE_RELEASE=2 to package the same version again. Uses the
# release preset (build/release; BUILD_DIR=DIR builds elsewhere with the same
# settings) and builds only agentd and agentctl. The packages land in
# BUILD_DIR/packages/. Exits non-zero when a build step fails or lintian or
# rpmlint report an error.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$src/build/release}
cd "$src"

# ---- What building and checking needs --------------------------------------
bash tests/install-deps.sh
tools=(dpkg-dev file rpm rpmlint lintian)  # dpkg-shlibdeps; file: CPack finds ELF files with it
missing=()
for p in "${tools[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# ---- Build -------------------------------------------------------------------
# Reproducible dates (changelogs, archive members) from the last commit.
if [ -z "${SOURCE_DATE_EPOCH:-}" ] && git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
  SOURCE_DATE_EPOCH=$(git -C "$src" log -1 --format=%ct)
  export SOURCE_DATE_EPOCH
fi
cmake --preset release -B "$build" "$@"
cmake --build "$build" --target agentd agentctl -j 2

# ---- Package -----------------------------------------------------------------
rm -f "$build"/packages/agentd*.deb "$build"/packages/agentd*.rpm
(cd "$build" && cpack -G "DEB;RPM" -B "$build/packages")
deb=$(ls "$build"/packages/agentd_*.deb)
rpm=$(ls "$build"/packages/agentd-*.rpm)

# ---- Check -------------------------------------------------------------------
status=0
echo "== lintian $(basename "$deb")"
# Every tag, overrides shown; errors fail the build. Overrides and their
# reasons: packaging/lintian-overrides.
lintian --display-info --display-experimental --pedantic --show-overrides --fail-on error "$deb" || status=1
echo "== rpmlint $(basename "$rpm")"
# Settings and filters with their reasons: packaging/rpmlint.toml.
rpmlint -c "$src/packaging/rpmlint.toml" "$rpm" || status=1

echo "== packages"
deb_installed_kib=$(dpkg-deb --field "$deb" Installed-Size)
rpm_installed_bytes=$(rpm -qp --queryformat '%{SIZE}' "$rpm" 2>/dev/null)
printf '%s: %s bytes, installed %s KiB\n' "$deb" "$(stat -c %s "$deb")" "$deb_installed_kib"
printf '%s: %s bytes, installed %s KiB\n' "$rpm" "$(stat -c %s "$rpm")" "$((rpm_installed_bytes / 1024))"
dpkg-deb --field "$deb" Depends | sed 's/^/deb Depends: /'

if [ "$status" -ne 0 ]; then
  echo "lintian or rpmlint reported errors" >&2
fi
exit "$status"
