#!/usr/bin/env bash
# Boots a board image from cross/image/build-image.sh under qemu with no
# network (-nic none) and checks it from inside over the serial console:
# multi-user target, root grown to the disk, provisioning from a test
# agentd-provision.txt on the boot partition (token 0600, file and secret gone),
# agentd READY, then an exchange-standin on 127.0.0.1 inside the guest and an
# upgrade of a test agent package (horizon 1.0.0 -> 1.0.1) through agentd with a
# manifest signed by a key made for the run. Prints boot-to-READY times.
#
#   cross/image/boot-test.sh ARCH [--image FILE.img] [--footprint] [--timeout S]
#
#   arm64  qemu-system-aarch64 -M virt, UEFI (qemu-efi-aarch64), systemd-boot
#          from the image's EFI system partition
#   armhf  qemu-system-arm -M virt, direct kernel boot with the kernel and
#          initrd taken from the image's boot partition
#
# The image file is not changed: the test boots a copy (1 GiB larger, for the
# first-boot growth) in build/image-test-ARCH. The test pieces (exchange-standin
# cross-built for ARCH and the libcpp-httplib it links, the test agent packages,
# signed manifests, guest-test.sh) go on a second, read-only disk that only this
# test attaches, and the kernel command line of the copy runs guest-test.sh
# (systemd.run=); nothing of them is in the image. exchange-standin comes from
# build/cross-ARCH (built here if missing). --footprint leaves agentd idle for
# 5 minutes after the upgrade and reports its RSS, PSS and CPU (sanity figures:
# under emulation). Prints "ok - ..." lines and "N passed, M failed"; exits 1 on
# a failure. As root on Debian 12; installs qemu-system-arm, qemu-efi-aarch64,
# mtools, e2fsprogs and openssl when missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
arch= image= footprint=0 timeout=
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --image) image=$(realpath "${2:?}"); shift 2 ;;
    --footprint) footprint=1; shift ;;
    --timeout) timeout=${2:?}; shift 2 ;;
    arm64 | armhf) arch=$1; shift ;;
    *) usage >&2; exit 2 ;;
  esac
done
[ -n "$arch" ] || { usage >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "boot-test.sh: needs root" >&2; exit 2; }
timeout=${timeout:-$([ "$footprint" = 1 ] && echo 1200 || echo 900)}
t_begin=$SECONDS

export DEBIAN_FRONTEND=noninteractive
need=()
for p in qemu-system-arm mtools e2fsprogs openssl dpkg-dev fdisk $([ "$arch" = arm64 ] && echo qemu-efi-aarch64); do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ -z "$image" ]; then
  image=$(ls "$src/build/image-$arch/"agentd-*-debian12-"$arch".img 2>/dev/null | tail -n 1 || true)
  [ -n "$image" ] || { echo "no image: cross/image/build-image.sh $arch" >&2; exit 2; }
fi
info=${image%.img}.info
build=$src/build/cross-$arch
standin=$build/tests/exchange-standin
if [ ! -x "$standin" ]; then
  [ -f "$build/CMakeCache.txt" ] || bash "$src/cross/build.sh" "$arch" --no-packages
  nice -n 10 cmake --build "$build" --target exchange-standin >/dev/null
fi
sysroot=$(sed -n 's/^AGENTD_SYSROOT:PATH=//p' "$build/CMakeCache.txt")
case "$arch" in
  arm64) triple=aarch64-linux-gnu ;;
  armhf) triple=arm-linux-gnueabihf ;;
esac

work=$src/build/image-test-$arch
rm -rf "$work"
mkdir -p "$work/payload/lib"
qemu_pid=
cleanup() {
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then kill "$qemu_pid" 2>/dev/null || true; fi
  rm -f "$work/disk.img" "$work/payload.img"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- The disk under test: a copy, one GiB larger --------------------------------
cp --sparse=always "$image" "$work/disk.img"
root_mib=$(sed -n 's/^root_partition=ext4 \([0-9]*\) MiB.*/\1/p' "$info")
truncate -s +1G "$work/disk.img"
part_start() {  # part_start N: byte offset of partition N
  sfdisk -d "$work/disk.img" 2>/dev/null | sed -n "s|^$work/disk.img$1 *: *start= *\([0-9]*\),.*|\1|p" | awk '{print $1 * 512}'
}
boot_off=$(part_start 1)
[ -n "$boot_off" ] || { echo "no partition 1 in $image" >&2; exit 1; }
export MTOOLS_SKIP_CHECK=1
m() { "$@"; }
bootfs="$work/disk.img@@$boot_off"

# ---- The test pieces ---------------------------------------------------------------
org=o node=n1 port=18080
token=img-test-token-$(openssl rand -hex 12)
versions="1.0.0 1.0.1"
openssl genpkey -algorithm ed25519 -out "$work/publisher.key" 2>/dev/null
cp "$standin" "$work/payload/exchange-standin"
cp -L "$sysroot/usr/lib/$triple/libcpp-httplib.so.0.11" "$work/payload/lib/"
make_agent() {  # make_agent VERSION: horizon_VERSION_all.deb, a test agent with a unit
  local v=$1 d=$work/pkg-$1
  mkdir -p "$d/DEBIAN" "$d/usr/bin" "$d/lib/systemd/system"
  printf 'Package: horizon\nVersion: %s\nArchitecture: all\nMaintainer: agentd tests <agentd@example.org>\nSection: admin\nPriority: optional\nDescription: test agent for the agentd image boot test\n' "$v" >"$d/DEBIAN/control"
  printf '#!/bin/sh\nsystemctl daemon-reload >/dev/null 2>&1 || true\n' >"$d/DEBIAN/postinst"
  printf '#!/bin/sh\necho "horizon test agent %s"\nexec sleep infinity\n' "$v" >"$d/usr/bin/horizon-test-agent"
  printf '[Unit]\nDescription=test agent (agentd image boot test)\n[Service]\nExecStart=/usr/bin/horizon-test-agent\n' >"$d/lib/systemd/system/horizon.service"
  chmod 0755 "$d/DEBIAN/postinst" "$d/usr/bin/horizon-test-agent"
  dpkg-deb -b --root-owner-group "$d" "$work/payload/horizon_${v}_all.deb" >/dev/null
}
for v in $versions; do
  make_agent "$v"
  name=horizon_${v}_all.deb
  f=$work/payload/$name
  printf '{"softwareUpgrade":{"files":["%s"],"version":"%s","sha256":{"%s":"%s"},"sizes":{"%s":%s}},"certificateUpgrade":{"files":[],"version":""},"configurationUpgrade":{"files":[],"version":""}}' \
    "$name" "$v" "$name" "$(sha256sum "$f" | cut -d ' ' -f 1)" "$name" "$(stat -c %s "$f")" >"$work/payload/agent-$v.json"
  openssl pkeyutl -sign -rawin -inkey "$work/publisher.key" -in "$work/payload/agent-$v.json" |
    base64 -w 0 >"$work/payload/agent-$v.json.sig"
done
bootdir=$([ "$arch" = arm64 ] && echo /boot/efi || echo /boot/firmware)
cat >"$work/payload/test.env" <<EOF
TOKEN=$token
ORG=$org
NODE=$node
PORT=$port
ARCH=$arch
ROOT_MIB=$root_mib
BOOTDIR=$bootdir
FOOTPRINT=$footprint
VERSIONS="$versions"
EOF
cp "$here/guest-test.sh" "$work/payload/"
truncate -s 64M "$work/payload.img"
mkfs.ext4 -q -L AGENTDTEST -d "$work/payload" "$work/payload.img"

# The operator's provisioning file, as it would be written to the boot partition.
{
  echo "# agentd-provision.txt (boot test)"
  echo "HZN_EXCHANGE_URL=http://127.0.0.1:$port/v1"
  echo "HZN_FSS_CSSURL=http://127.0.0.1:$port/css"
  echo "HZN_ORG_ID=$org"
  echo "HZN_EXCHANGE_NODE_AUTH=$node:$token"
  echo "AGENTD_LOG_LEVEL=debug"
  echo "AGENTD_AGENT_PACKAGE=horizon"
  echo "AGENTD_AGENT_UNIT=horizon.service"
  echo "AGENTD_POLL_SECONDS=2"
  echo "AGENTD_CHANGES_SECONDS=1"
  echo "AGENTD_IDLE_HEARTBEAT_SECONDS=10"
  echo "AGENTD_HEALTH_TIMEOUT_SECONDS=60"
  openssl pkey -in "$work/publisher.key" -pubout
} >"$work/agentd-provision.txt"
mcopy -o -i "$bootfs" "$work/agentd-provision.txt" ::agentd-provision.txt

# ---- The kernel command line: run guest-test.sh, then power off -------------------------
cmdline=$(sed -n 's/^cmdline=//p' "$info")
# kernel-command-line.service (systemd.run=) is wanted by the default target,
# which waits for it: it only mounts the test disk and starts guest-test.sh as
# its own unit, so the boot goes on to multi-user.target as it would without
# the test; guest-test.sh powers the guest off when it is done.
run="systemd.run=\"/bin/sh -c 'mkdir -p /run/agentd-test && mount -o ro LABEL=AGENTDTEST /run/agentd-test && exec systemd-run --no-block --unit=agentd-image-test /bin/bash /run/agentd-test/guest-test.sh'\""
test_cmdline="$cmdline $run systemd.wants=kernel-command-line.service systemd.run_success_action=none systemd.run_failure_action=poweroff"
qemu=()
case "$arch" in
  arm64)
    entry=$work/agentd.conf
    mcopy -o -i "$bootfs" ::loader/entries/agentd.conf "$entry"
    { grep -v '^options ' "$entry"; printf 'options %s\n' "$test_cmdline"; } >"$entry.new"
    mv "$entry.new" "$entry"
    mcopy -o -i "$bootfs" "$entry" ::loader/entries/agentd.conf
    qemu=(qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024
      -bios /usr/share/qemu-efi-aarch64/QEMU_EFI.fd
      -drive if=virtio,format=raw,file="$work/disk.img"
      -drive if=virtio,format=raw,readonly=on,file="$work/payload.img") ;;
  armhf)
    mcopy -o -i "$bootfs" ::vmlinuz "$work/vmlinuz"
    mcopy -o -i "$bootfs" ::initrd.img "$work/initrd.img"
    qemu=(qemu-system-arm -M virt,highmem=off -cpu cortex-a15 -smp 2 -m 1024
      -kernel "$work/vmlinuz" -initrd "$work/initrd.img" -append "$test_cmdline"
      -drive if=none,id=disk,format=raw,file="$work/disk.img" -device virtio-blk-device,drive=disk
      -drive if=none,id=payload,format=raw,readonly=on,file="$work/payload.img" -device virtio-blk-device,drive=payload) ;;
esac
qemu+=(-nic none -nographic -monitor none -serial "file:$work/console.log" -no-reboot)

# ---- Boot ------------------------------------------------------------------------------
echo "# booting $(basename "$image") under ${qemu[0]} (no network), timeout $timeout s"
t0=$(date +%s%N)
nice -n 5 "${qemu[@]}" </dev/null >"$work/qemu.out" 2>&1 &
qemu_pid=$!
t_ready=
deadline=$((SECONDS + timeout))
while kill -0 "$qemu_pid" 2>/dev/null; do
  if [ -z "$t_ready" ] && grep -qa 'Started agentd.service' "$work/console.log" 2>/dev/null; then
    t_ready=$((($(date +%s%N) - t0) / 1000000))
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "not ok - the guest did not power off within $timeout s"
    kill "$qemu_pid" 2>/dev/null || true
    break
  fi
  sleep 0.5
done
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=
t_total=$((($(date +%s%N) - t0) / 1000000))

# ---- Results ---------------------------------------------------------------------------
results=$(tr -d '\r' <"$work/console.log" | sed -n 's/^.*AGENTD-TEST: //p')
printf '%s\n' "$results" | grep -v -E '^[0-9]+ passed, [0-9]+ failed$' || true
summary=$(printf '%s\n' "$results" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1 || true)
[ -z "$t_ready" ] || echo "# host: qemu start to 'Started agentd.service' on the console: $t_ready ms (firmware, kernel, systemd under emulation)"
echo "# host: qemu ran $t_total ms; console log: $work/console.log"
if [ -z "$summary" ]; then
  echo "not ok - guest-test.sh reported no result"
  tail -n 40 "$work/console.log" | sed 's/^/#   | /'
  echo "# script took $((SECONDS - t_begin)) s"
  echo "0 passed, 1 failed"
  exit 1
fi
passed=${summary%% passed*}
failed=${summary#*passed, }
failed=${failed%% failed*}
echo "# script took $((SECONDS - t_begin)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
