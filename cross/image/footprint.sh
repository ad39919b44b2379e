#!/usr/bin/env bash
# Footprint of agentd on the arm64 board image: boots the image under qemu
# (boot-test.sh arm64 --footprint: first boot, provisioning, the test agent's
# upgrade, then 5 idle minutes) and prints agentd's idle RSS, PSS and CPU in the
# guest after those 5 minutes, the boot-to-READY time and the image's sizes.
#
#   cross/image/footprint.sh [ARCH (default arm64)] [--image FILE.img]
#
# Sanity figures only: the guest runs under TCG emulation on a shared 2-core
# host, so CPU time is that of emulated instructions (several times a real
# board's), and memory is the guest kernel's accounting of an arm64 process
# (that one is close to a board's). Builds nothing: run build-image.sh first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
arch=arm64
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    arm64 | armhf) arch=$1; shift ;;
    --image) args+=(--image "$2"); image=$2; shift 2 ;;
    *) echo "footprint.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
image=${image:-$(ls "$src/build/image-$arch/"agentd-*-debian12-"$arch".img | tail -n 1)}
info=${image%.img}.info
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
bash "$here/boot-test.sh" "$arch" "${args[@]}" --footprint | tee "$log" || status=$?
echo
echo "== agentd footprint on the $arch image (under qemu emulation: sanity figures)"
grep -E '# (footprint|boot-to-READY|start-to-READY|upgrade took|host: qemu start)' "$log" | sed 's/^# /  /'
kib() { echo $((($1 + 1023) / 1024)); }
raw=$(sed -n 's/^raw_bytes=//p' "$info")
zst=$(sed -n 's/^zst_bytes=//p' "$info")
echo "  image: raw $(kib "$raw") KiB ($((raw / 1048576)) MiB), zstd $(kib "$zst") KiB ($((zst / 1048576)) MiB)," \
  "$(sed -n 's/^packages=//p' "$info") packages; $(sed -n 's/^root_partition=//p' "$info")"
exit "$status"
