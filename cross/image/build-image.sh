#!/usr/bin/env bash
# Builds a Debian 12 disk image for ARM boards with agentd preinstalled.
#
#   cross/image/build-image.sh ARCH [OPTIONS]        ARCH: arm64 or armhf
#
# The root is made with mmdebstrap (foreign architecture through qemu-user and
# binfmt_misc): the Debian kernel (linux-image-arm64 / linux-image-armmp),
# systemd, networkd and timesyncd, the agentd .deb cross-built from this tree
# (cross/build.sh ARCH, run when the .deb is missing) with its unit enabled, the
# operator's directories (/etc/agentd/trusted.d, /etc/default/horizon) and the
# image's own first-boot units: the root partition and file system grow to the
# disk, and a provisioning file on the boot partition configures agentd
# (cross/image/README.md). No secret and no machine id are in the image.
#
# Disk layout
#   arm64  GPT: 1 EFI system partition (FAT, /boot/efi: systemd-boot, kernel,
#          initrd), 2 root (ext4). Boots on UEFI firmware (qemu virt with
#          qemu-efi-aarch64, SystemReady boards, U-Boot with UEFI).
#   armhf  MBR: 1 boot partition (FAT, bootable, /boot/firmware: kernel, initrd,
#          dtbs/, extlinux/extlinux.conf for U-Boot's distro boot), 2 root
#          (ext4). Boots by direct kernel boot (qemu virt) or U-Boot.
#
# Output in OUT (default build/image-ARCH):
#   NAME.img          the raw image (kept for the boot test; not published)
#   NAME.img.zst      the compressed image       NAME.img.zst.sha256
#   NAME.img.bmap     block map for bmaptool     NAME.manifest (packages)
#   NAME.info         sizes, SHA-256 of raw and compressed, kernel, cmdline
# NAME is agentd-VERSION-debian12-ARCH (VERSION of the .deb).
#
# Options
#   --deb FILE            the agentd package (default: build/cross-ARCH/packages/)
#   --out DIR             output directory
#   --mirror URL          Debian mirror (default http://deb.debian.org/debian;
#                         a snapshot.debian.org URL pins the package versions)
#   --security-mirror URL (default http://deb.debian.org/debian-security; "none" skips)
#   --extra-packages A,B  more Debian packages in the root
#   --console DEV         kernel console (default ttyAMA0: qemu virt, PL011 UARTs)
#   --board generic|rpi   rpi: Raspberry Pi layout (MBR, firmware partition at
#                         /boot/firmware filled by Debian's raspi-firmware from
#                         non-free-firmware; see README.md). Default generic.
#   --keep-root           keep the unpacked root directory in OUT/root
#   -h, --help
#
# Reproducible: SOURCE_DATE_EPOCH (default: the last commit's time) sets every
# time stamp, the file system and partition ids are derived from the image name,
# and the same .deb and the same archive state give the same bytes
# (cross/image/README.md says how to check). Needs root on Debian 12 and the
# Debian archive; installs mmdebstrap, arch-test, qemu-user-static, binfmt-support,
# dosfstools, mtools, fdisk, e2fsprogs, zstd and bmap-tools when missing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

arch=
deb=
out=
mirror=http://deb.debian.org/debian
security_mirror=http://deb.debian.org/debian-security
extra=
console=ttyAMA0
board=generic
keep_root=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --deb) deb=$(realpath "${2:?}"); shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --mirror) mirror=${2:?}; shift 2 ;;
    --security-mirror) security_mirror=${2:?}; shift 2 ;;
    --extra-packages) extra=${2:?}; shift 2 ;;
    --console) console=${2:?}; shift 2 ;;
    --board) board=${2:?}; shift 2 ;;
    --keep-root) keep_root=1; shift ;;
    arm64 | armhf) arch=$1; shift ;;
    *) usage >&2; exit 2 ;;
  esac
done
[ -n "$arch" ] || { usage >&2; exit 2; }
case "$board" in generic | rpi) ;; *) echo "--board: generic or rpi" >&2; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || { echo "build-image.sh: run as root (mmdebstrap --mode=root)" >&2; exit 1; }
out=${out:-$src/build/image-$arch}
mkdir -p "$out"
out=$(realpath "$out")  # the steps below run tools from other directories
log() { echo "=== image($arch) $((SECONDS - t0)) s: $*"; }
t0=$SECONDS

case "$arch" in
  arm64) kernel_pkg=linux-image-arm64; qemu_arch=aarch64 ;;
  armhf) kernel_pkg=linux-image-armmp; qemu_arch=arm ;;
esac
# Where the boot partition is mounted, and the partition table.
if [ "$arch" = arm64 ] && [ "$board" = generic ]; then
  bootdir=/boot/efi; label=gpt
else
  bootdir=/boot/firmware; label=dos
fi

# ---- Host tools --------------------------------------------------------------
export DEBIAN_FRONTEND=noninteractive
need=()
for p in mmdebstrap arch-test qemu-user-static binfmt-support dosfstools mtools fdisk e2fsprogs zstd bmap-tools; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Foreign binaries in the root run through binfmt_misc (mmdebstrap needs it).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
[ -e "/proc/sys/fs/binfmt_misc/qemu-$qemu_arch" ] || update-binfmts --enable "qemu-$qemu_arch"

# ---- The agentd package ------------------------------------------------------
if [ -z "$deb" ]; then
  deb=$(ls "$src/build/cross-$arch/packages/"agentd_*_"$arch".deb 2>/dev/null | tail -n 1 || true)
  if [ -z "$deb" ]; then
    log "no agentd .deb for $arch: cross/build.sh $arch"
    bash "$src/cross/build.sh" "$arch"
    deb=$(ls "$src/build/cross-$arch/packages/"agentd_*_"$arch".deb | tail -n 1)
  fi
fi
[ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || { echo "$deb is not $arch" >&2; exit 1; }
deb_version=$(dpkg-deb -f "$deb" Version)
name=agentd-${deb_version}-debian12-$arch
[ "$board" = generic ] || name=$name-$board
log "$name from $(basename "$deb")"

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git -C "$src" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
# Ids derived from the image name: the same inputs give the same bytes. Every
# board flashed with one image shares them; the machine id is made at first boot.
derive_uuid() {
  local h
  h=$(printf '%s/%s' "$name" "$1" | sha256sum | cut -c1-32)
  printf '%s-%s-4%s-8%s-%s\n' "${h:0:8}" "${h:8:4}" "${h:13:3}" "${h:17:3}" "${h:20:12}"
}
root_fs_uuid=$(derive_uuid root-fs)
hash_seed=$(derive_uuid root-hash-seed)
disk_guid=$(derive_uuid disk)
boot_part_uuid=$(derive_uuid boot-part)
root_part_uuid=$(derive_uuid root-part)
fat_serial=$(printf '%s/fat' "$name" | sha256sum | cut -c1-8)
mbr_id=0x$(printf '%s/mbr' "$name" | sha256sum | cut -c1-8)
if [ "$label" = gpt ]; then
  root_partuuid=$root_part_uuid
else
  root_partuuid=${mbr_id#0x}-02
fi
# ro: systemd-fsck-root checks the root before systemd-remount-fs makes it
# read-write (the initrd has no fsck for a root it cannot see at build time).
cmdline="root=PARTUUID=$root_partuuid rootwait ro console=tty0 console=$console,115200"

mkdir -p "$out"
work=$(mktemp -d "$out/.work.XXXXXX")
cleanup() {
  # An interrupted mmdebstrap leaves its mounts (proc, sys, dev/pts) in the root.
  local m
  for m in $(awk -v w="$work/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$m" || true
  done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
root=$work/root

# ---- The root ----------------------------------------------------------------
# What an unattended board needs: the kernel and an initrd, systemd with udev
# and D-Bus (agentd restarts units over D-Bus), networkd and timesyncd (TLS
# needs a clock; many boards have no RTC), growpart and resize2fs for the first
# boot, curl and CA certificates (Open Horizon's agent-install.sh uses curl).
packages=(systemd systemd-sysv systemd-timesyncd udev dbus kmod initramfs-tools zstd "$kernel_pkg"
  e2fsprogs dosfstools fdisk cloud-guest-utils curl ca-certificates netbase iproute2 procps less)
[ "$arch" = arm64 ] && [ "$board" = generic ] && packages+=(systemd-boot-efi)
components=main
if [ "$board" = rpi ]; then
  packages+=(raspi-firmware)
  components="main non-free-firmware"
fi
if [ -n "$extra" ]; then
  IFS=, read -r -a more <<<"$extra"
  packages+=("${more[@]}")
fi
sources=("deb $mirror bookworm $components" "deb $mirror bookworm-updates $components")
[ "$security_mirror" = none ] || sources+=("deb $security_mirror bookworm-security $components")

# fstab goes in before the initrd is made: its fsck hook looks at the root's type.
cat >"$work/fstab" <<EOF
# <file system>                 <mount point>  <type>  <options>  <dump>  <pass>
PARTUUID=$root_partuuid  /  ext4  defaults,noatime,commit=30  0  1
PARTUUID=$( [ "$label" = gpt ] && echo "$boot_part_uuid" || echo "${mbr_id#0x}-01")  $bootdir  vfat  umask=0077,nofail  0  2
EOF
log "mmdebstrap (this runs the $arch maintainer scripts under qemu-user)"
cp "$deb" "$work/agentd.deb"
# The initrd: a generic one for local storage (MODULES=most without the
# network, frame buffer and legacy bus drivers: cross/image/initramfs-modules),
# zstd; the build host's devices mean nothing to the board. Made once at the
# end: under qemu-user each run takes minutes, and the kernel's postinst and
# later packages' triggers would each make it again.
# Documentation is left out (copyright files stay), as on Debian's cloud images.
nice -n 10 mmdebstrap --mode=root --variant=minbase --architectures="$arch" \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --aptopt='Acquire::Languages "none"' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" &&
    printf "MODULES=list\nCOMPRESS=zstd\n" >"$1/etc/initramfs-tools/conf.d/agentd-image.conf" &&
    mkdir -p "$1/etc/initramfs-tools/hooks" &&
    cp "'"$here"'/initramfs-modules" "$1/etc/initramfs-tools/hooks/agentd-image-modules" &&
    chmod 0755 "$1/etc/initramfs-tools/hooks/agentd-image-modules" &&
    printf "do_symlinks=no\n" >"$1/etc/kernel-img.conf" &&
    chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs &&
    printf "#!/bin/sh\nexit 0\n" >"$1/usr/sbin/update-initramfs" && chmod 0755 "$1/usr/sbin/update-initramfs"' \
  --customize-hook="copy-in $work/agentd.deb /tmp" \
  --customize-hook='chroot "$1" apt-get install -y -q --no-install-recommends /tmp/agentd.deb' \
  --customize-hook="upload $work/fstab /etc/fstab" \
  --customize-hook='rm -f "$1/tmp/agentd.deb" "$1/usr/sbin/update-initramfs" &&
    chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs &&
    chroot "$1" update-initramfs -c -k all' \
  bookworm "$root" "${sources[@]}"

# ---- The image's own files -----------------------------------------------------
log "configure the root"
cp -a --no-preserve=ownership "$here/rootfs/." "$root/"
chmod 0755 "$root/usr/local/sbin/"*
# The provisioning unit looks at the boot partition of this layout.
sed -i "s|@BOOTDIR@|$bootdir|g" "$root/etc/systemd/system/agentd-provision.service" \
  "$root/usr/local/sbin/agentd-provision" "$root/usr/local/sbin/agentd-image-boot-files"
systemctl --root="$root" enable agentd-provision.service agentd-growroot.service agentd-image-ssh-keys.service \
  systemd-networkd.service systemd-timesyncd.service >/dev/null 2>&1
# No waiting for the network at boot: agentd retries the hub by itself, and a
# board without a cable would wait two minutes and report a failed unit.
systemctl --root="$root" disable systemd-networkd-wait-online.service >/dev/null 2>&1 || true
systemctl --root="$root" set-default multi-user.target >/dev/null 2>&1
systemctl --root="$root" is-enabled agentd.service >/dev/null
mkdir -p "$root$bootdir"
echo "agentd-node" >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tagentd-node\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
echo "$cmdline" >"$root/etc/kernel/cmdline"
# The machine id is made on the first boot: every board gets its own.
printf 'uninitialized\n' >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root/var/lib/systemd/random-seed" "$root/var/lib/systemd/credential.secret"
rm -f "$root"/etc/ssh/ssh_host_*  # a shared host key would be a shared secret (extra packages)
# Nobody logs in with a password; root is locked (see README.md for console access).
# agentd keeps the running version's package for a rollback of its own upgrade:
# the image's package was installed from a file, so it goes where apt caches.
cp "$deb" "$root/var/cache/apt/archives/agentd_${deb_version//:/%3a}_$arch.deb"
# The empty operator directories: the package has /etc/agentd/{conf.d,trusted.d}.
[ -e "$root/etc/default/horizon" ] || : >"$root/etc/default/horizon"
chmod 0644 "$root/etc/default/horizon"
rm -rf "$root/var/log/journal"/* "$root/var/cache/apt/"*.bin "$root/var/cache/debconf/"*-old \
  "$root/var/lib/dpkg/"*-old "$root/var/log/"*.log "$root/var/log/apt/"* "$root/tmp/"* "$root/root/.bash_history"

# ---- The boot partition ----------------------------------------------------------
log "boot partition ($bootdir)"
AGENTD_IMAGE_ROOT=$root bash "$root/usr/local/sbin/agentd-image-boot-files" >/dev/null
if [ "$arch" = arm64 ] && [ "$board" = generic ]; then
  # systemd-boot as the removable-media loader: needs no EFI variables.
  mkdir -p "$root$bootdir/EFI/BOOT" "$root$bootdir/loader/entries"
  cp "$root/usr/lib/systemd/boot/efi/systemd-bootaa64.efi" "$root$bootdir/EFI/BOOT/BOOTAA64.EFI"
  printf 'default agentd.conf\ntimeout 0\nconsole-mode keep\neditor no\n' >"$root$bootdir/loader/loader.conf"
  printf 'title Debian 12 (agentd)\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n' "$cmdline" \
    >"$root$bootdir/loader/entries/agentd.conf"
elif [ "$board" = generic ]; then
  # U-Boot's distro boot reads extlinux.conf from the bootable partition.
  mkdir -p "$root$bootdir/extlinux"
  printf 'default agentd\ntimeout 1\nlabel agentd\n  kernel /vmlinuz\n  initrd /initrd.img\n  fdtdir /dtbs\n  append %s\n' \
    "$cmdline" >"$root$bootdir/extlinux/extlinux.conf"
else
  # raspi-firmware's kernel hook filled /boot/firmware (config.txt, the
  # firmware blobs, kernel, initrd, dtbs); cmdline.txt carries our root.
  echo "$cmdline" | sed "s/console=$console,115200/console=serial0,115200/" >"$root$bootdir/cmdline.txt"
fi
boot_mib=256
boot_img=$work/boot.img
find "$root$bootdir" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
truncate -s "${boot_mib}M" "$boot_img"
mkfs.vfat -F 32 -n "$( [ "$label" = gpt ] && echo ESP || echo BOOT)" -i "$fat_serial" --invariant "$boot_img" >/dev/null
# mtools takes SOURCE_DATE_EPOCH for the directories it makes; -m keeps the files' times.
(cd "$root$bootdir" && find . -mindepth 1 -type d -printf '%P\n' | sort | while read -r d; do
  MTOOLS_SKIP_CHECK=1 mmd -i "$boot_img" "::$d"; done)
(cd "$root$bootdir" && find . -type f -printf '%P\n' | sort | while read -r f; do
  MTOOLS_SKIP_CHECK=1 mcopy -m -i "$boot_img" "$f" "::$f"; done)
boot_files=$(cd "$root$bootdir" && find . -type f | wc -l)
rm -rf "${root:?}$bootdir"/*

# ---- The root file system ---------------------------------------------------------
log "root file system"
manifest=$work/manifest
dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Package}\t${Version}\t${Architecture}\n' | sort >"$manifest"
kernel_version=$(ls "$root/boot/" | sed -n 's/^vmlinuz-//p' | sort -V | tail -n 1)
# Every time stamp at SOURCE_DATE_EPOCH at most.
find "$root" -xdev -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"
used_mib=$(du -sxm "$root" | cut -f1)
# Room for an upgrade or two before the first boot grows it to the disk.
root_mib=$(((used_mib * 13 / 10 + 256 + 3) / 4 * 4))
root_img=$work/root.img
truncate -s "${root_mib}M" "$root_img"
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -L agentd-root -U "$root_fs_uuid" \
  -E "hash_seed=$hash_seed,root_owner=0:0" -d "$root" "$root_img"
# mke2fs -d copies each inode's change and access times from the build host
# (now); set them to SOURCE_DATE_EPOCH like the others, and the superblock's
# times too. lost+found is made by mke2fs itself (fake time).
ctime=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S)
(cd "$root" && find . -xdev -mindepth 1 -printf '%P\n' | grep -v '"' |
  sed "s|.*|sif \"/&\" ctime $ctime\nsif \"/&\" atime $ctime|"
  printf 'sif / ctime %s\nsif / atime %s\n' "$ctime" "$ctime"
  printf 'ssv mtime %s\nssv wtime %s\nssv lastcheck %s\n' "$ctime" "$ctime" "$ctime") >"$work/times.cmds"
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH debugfs -w -f "$work/times.cmds" "$root_img" >/dev/null 2>"$work/debugfs.err" ||
  { cat "$work/debugfs.err" >&2; exit 1; }
grep -v '^debugfs ' "$work/debugfs.err" >&2 || true
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH e2fsck -fn "$root_img" >"$work/e2fsck.out" 2>&1 ||
  { cat "$work/e2fsck.out" >&2; exit 1; }

# ---- The disk --------------------------------------------------------------------
log "disk ($label)"
img=$out/$name.img
rm -f "$img"
first_mib=4  # room for a boot loader before the first partition (U-Boot on many boards)
disk_mib=$((first_mib + boot_mib + root_mib + 1))
truncate -s "${disk_mib}M" "$img"
if [ "$label" = gpt ]; then
  sfdisk -q --no-reread --no-tell-kernel "$img" <<EOF
label: gpt
label-id: $disk_guid
unit: sectors
first-lba: 2048
start=$((first_mib * 2048)), size=$((boot_mib * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$boot_part_uuid, name="ESP"
start=$(((first_mib + boot_mib) * 2048)), size=$((root_mib * 2048)), type=B921B045-1DF0-41C3-AF44-4C6F280D3FAE, uuid=$root_part_uuid, name="root"
EOF
else
  sfdisk -q --no-reread --no-tell-kernel "$img" <<EOF
label: dos
label-id: $mbr_id
unit: sectors
start=$((first_mib * 2048)), size=$((boot_mib * 2048)), type=c, bootable
start=$(((first_mib + boot_mib) * 2048)), size=$((root_mib * 2048)), type=83
EOF
fi
dd if="$boot_img" of="$img" bs=1M seek="$first_mib" conv=notrunc,sparse status=none
dd if="$root_img" of="$img" bs=1M seek="$((first_mib + boot_mib))" conv=notrunc,sparse status=none
touch -d "@$SOURCE_DATE_EPOCH" "$img"

# ---- Outputs -----------------------------------------------------------------------
log "compress and describe"
rm -f "$img.zst"
nice -n 10 zstd -q -T2 -15 --long=27 "$img" -o "$img.zst"
(cd "$out" && sha256sum "$name.img.zst" >"$name.img.zst.sha256")
bmaptool -q create -o "$img.bmap" "$img" 2>/dev/null || bmaptool create -o "$img.bmap" "$img"
cp "$manifest" "$out/$name.manifest"
raw_sha=$(sha256sum "$img" | cut -d ' ' -f 1)
cat >"$out/$name.info" <<EOF
name=$name
arch=$arch
board=$board
agentd_deb=$(basename "$deb")
agentd_deb_sha256=$(sha256sum "$deb" | cut -d ' ' -f 1)
source_date_epoch=$SOURCE_DATE_EPOCH
kernel=$kernel_version
cmdline=$cmdline
partition_table=$label
boot_partition=$bootdir ${boot_mib} MiB FAT32, $boot_files files
root_partition=ext4 ${root_mib} MiB (${used_mib} MiB used), grows to the disk at first boot
packages=$(wc -l <"$manifest")
raw_bytes=$(stat -c %s "$img")
raw_sha256=$raw_sha
zst_bytes=$(stat -c %s "$img.zst")
zst_sha256=$(cut -d ' ' -f 1 "$out/$name.img.zst.sha256")
EOF
if [ "$keep_root" = 1 ]; then rm -rf "$out/root"; mv "$root" "$out/root"; fi
cat "$out/$name.info"
log "done in $((SECONDS - t0)) s: $img.zst"
