#!/bin/bash
# Installs the agentd packages in throwaway Debian 12 roots (mmdebstrap; nothing
# on this machine is touched) and checks their life cycle: install, conffile and
# state kept across an upgrade, the rollback script, remove, purge.
#
#   packaging/test-packages.sh OLD.deb NEW.deb [OLD.rpm NEW.rpm]
#
# OLD and NEW are two builds of agentd with increasing versions (e.g.
# -DAGENTD_PACKAGE_RELEASE=1 and 2). The RPMs are installed with Debian's rpm
# into a root of their own, beside a stand-in package that provides what
# agentd requires (the libraries there are Debian's, unknown to rpm).
# AGENTD_TEST_ROOT=DIR reuses a root made before (copied, not changed; for the
# RPMs it needs the rpm package); otherwise roots are made in a temporary
# directory (needs the Debian mirror) and deleted at the end.
# As root, on Debian. systemd does not run in the roots, so the maintainer
# scripts take their "no systemd" paths; starting and restarting the unit is
# for a test under a running systemd (systemd-nspawn).
#
# Prints one line per check and "N passed, N failed"; exits 1 on any failure.
set -euo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
  exit 2
fi
old_deb=$(realpath "$1")
new_deb=$(realpath "$2")
old_rpm=${3:+$(realpath "$3")}
new_rpm=${4:+$(realpath "$4")}
base_root=${AGENTD_TEST_ROOT:-}

work=$(mktemp -d /tmp/agentd-pkgtest.XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
root=$work/root

make_root() {  # make_root DIR
  if [ -n "$base_root" ]; then
    cp -a "$base_root" "$1"
  else
    command -v mmdebstrap >/dev/null || apt-get install -y -qq mmdebstrap >/dev/null
    # The libraries agentd links (Depends is checked by dpkg -i, which does not
    # fetch), systemd for systemd-analyze and the units' targets, rpm for the RPMs.
    mmdebstrap --quiet --mode=root --variant=apt \
      --include=libcurl4,libssl3,libcjson1,libsystemd0,systemd,rpm bookworm "$1" \
      "deb http://deb.debian.org/debian bookworm main"
  fi
}
make_root "$root"

passed=0
failed=0
check() {  # check DESCRIPTION COMMAND...: passes when COMMAND succeeds
  local what=$1 output
  shift
  if output=$("$@" 2>&1); then
    echo "ok   $what"
    passed=$((passed + 1))
  else
    echo "FAIL $what"
    printf '%s\n' "$output" | sed 's/^/     | /'
    failed=$((failed + 1))
  fi
}
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
# shellcheck disable=SC2016 # dpkg-query's ${...} fields
version_of() { in_root dpkg-query -W -f='${Version}' agentd 2>/dev/null; }
# shellcheck disable=SC2016
status_of() { in_root dpkg-query -W -f='${db:Status-Abbrev}' agentd 2>/dev/null | tr -d ' '; }
old_version=$(dpkg-deb --field "$old_deb" Version)
new_version=$(dpkg-deb --field "$new_deb" Version)
cp "$old_deb" "$root/tmp/old.deb"
cp "$new_deb" "$root/tmp/new.deb"

echo "# install $old_version"
check "dpkg -i succeeds (Depends satisfied)" in_root dpkg -i /tmp/old.deb
check "installed version is $old_version" test "$(version_of)" = "$old_version"
for f in /usr/sbin/agentd /usr/sbin/agentctl /usr/libexec/agentd/rollback \
  /usr/lib/systemd/system/agentd.service /usr/lib/systemd/system/agentd-rollback.service \
  /etc/agentd/agentd.conf /usr/share/man/man8/agentd.8.gz /usr/share/doc/agentd/copyright \
  /usr/share/agentd/agentd-alerts.yml /usr/share/agentd/agentd-alerts.test.yml \
  /usr/share/agentd/grafana-dashboard.json; do
  check "installed $f" test -e "$root$f"
done
check "agentd.conf is a conffile" grep -qx /etc/agentd/agentd.conf "$root/var/lib/dpkg/info/agentd.conffiles"
check "agentd.service enabled (multi-user.target.wants)" \
  test -L "$root/etc/systemd/system/multi-user.target.wants/agentd.service"
check "agentd-rollback.service not enabled" \
  test ! -e "$root/etc/systemd/system/multi-user.target.wants/agentd-rollback.service"
check "agentd --version runs" in_root agentd --version
check "unconfigured: agentd --check-config exits 3" \
  bash -c "chroot '$root' agentd --check-config; test \$? -eq 3"
check "systemd-analyze verify: no complaints" \
  bash -c "out=\$(chroot '$root' systemd-analyze verify --man=no agentd.service agentd-rollback.service 2>&1); echo \"\$out\"; test -z \"\$out\""

echo "# configure, then upgrade to $new_version"
echo 'AGENTD_LOG_LEVEL=debug  # edited by the operator' >>"$root/etc/agentd/agentd.conf"
edited_sum=$(md5sum <"$root/etc/agentd/agentd.conf")
mkdir -p "$root/etc/agentd/conf.d" "$root/var/lib/agentd"
echo 'AGENTD_POLL_SECONDS=5' >"$root/etc/agentd/conf.d/local.conf"
echo '{"state":"idle"}' >"$root/var/lib/agentd/member.json"
check "dpkg -i of $new_version succeeds" in_root dpkg -i /tmp/new.deb </dev/null
check "installed version is $new_version" test "$(version_of)" = "$new_version"
check "operator's edit of agentd.conf kept" test "$(md5sum <"$root/etc/agentd/agentd.conf")" = "$edited_sum"
check "conf.d/local.conf kept" test -f "$root/etc/agentd/conf.d/local.conf"
check "state kept" test -f "$root/var/lib/agentd/member.json"
check "still enabled after the upgrade" \
  test -L "$root/etc/systemd/system/multi-user.target.wants/agentd.service"

echo "# rollback script"
check "not a crash loop: does nothing, exits 0" \
  in_root MONITOR_SERVICE_RESULT=exit-code /usr/libexec/agentd/rollback
check "crash loop without a kept package: exits 1" \
  bash -c "chroot '$root' env MONITOR_SERVICE_RESULT=start-limit-hit /usr/libexec/agentd/rollback; test \$? -eq 1"
mkdir -p "$root/var/lib/agentd/previous/agentd"
cp "$old_deb" "$root/var/lib/agentd/previous/agentd/"
check "crash loop with a kept package: reinstalls it" \
  in_root MONITOR_SERVICE_RESULT=start-limit-hit /usr/libexec/agentd/rollback
check "version after the rollback is $old_version" test "$(version_of)" = "$old_version"
check "operator's edit kept through the rollback" test "$(md5sum <"$root/etc/agentd/agentd.conf")" = "$edited_sum"
check "the used package moved to rolled-back/" \
  test -f "$root/var/lib/agentd/rolled-back/$(basename "$old_deb")" -a ! -e "$root/var/lib/agentd/previous/agentd/$(basename "$old_deb")"
check "a second crash loop finds nothing to reinstall: exits 1" \
  bash -c "chroot '$root' env MONITOR_SERVICE_RESULT=start-limit-hit /usr/libexec/agentd/rollback; test \$? -eq 1"
check "a kept package of another name is refused" bash -c "
  mkdir -p '$root/tmp/other/DEBIAN' &&
  dpkg-deb -x '$root/tmp/new.deb' '$root/tmp/other' && dpkg-deb -e '$root/tmp/new.deb' '$root/tmp/other/DEBIAN' &&
  sed -i 's/^Package: agentd/Package: agentd-other/' '$root/tmp/other/DEBIAN/control' &&
  dpkg-deb -b '$root/tmp/other' '$root/var/lib/agentd/previous/agentd/other.deb' &&
  ! chroot '$root' env MONITOR_SERVICE_RESULT=start-limit-hit /usr/libexec/agentd/rollback &&
  test \"\$(chroot '$root' dpkg-query -W -f='\${Version}' agentd)\" = '$old_version'"
rm -f "$root/var/lib/agentd/previous/agentd/other.deb"

echo "# remove"
check "dpkg -r succeeds" in_root dpkg -r agentd
check "package state is rc (config-files)" test "$(status_of)" = rc
check "binaries removed" test ! -e "$root/usr/sbin/agentd" -a ! -e "$root/usr/libexec/agentd"
check "units removed" test ! -e "$root/usr/lib/systemd/system/agentd.service"
check "agentd.conf kept" test "$(md5sum <"$root/etc/agentd/agentd.conf")" = "$edited_sum"
check "state kept" test -f "$root/var/lib/agentd/member.json"

echo "# reinstall after remove keeps it enabled"
check "dpkg -i again" in_root dpkg -i /tmp/new.deb
check "enabled again" test -L "$root/etc/systemd/system/multi-user.target.wants/agentd.service"
check "removed again" in_root dpkg -r agentd

echo "# purge"
check "dpkg -P succeeds" in_root dpkg -P agentd
check "package unknown to dpkg" test -z "$(status_of)"
check "/etc/agentd gone" test ! -e "$root/etc/agentd"
check "/var/lib/agentd gone" test ! -e "$root/var/lib/agentd"
check "enable symlink gone" test ! -e "$root/etc/systemd/system/multi-user.target.wants/agentd.service"
check "no mask left" test ! -e "$root/etc/systemd/system/agentd.service"
check "nothing of agentd left" bash -c "! find '$root' -xdev -name '*agentd*' ! -path '$root/tmp/*' | grep ."

echo "# deb maintainer scripts with systemd running (a recording systemctl stands in)"
# /run/systemd/system makes the scripts take their systemd paths; the stand-in
# logs each call, says every unit is enabled and none is active.
mkdir -p "$root/run/systemd/system" "$root/usr/local/sbin"
cat >"$root/usr/local/sbin/systemctl" <<'STANDIN'
#!/bin/sh
echo "$*" >>/tmp/systemctl.log
case "$*" in
  *is-enabled*) echo enabled ;;
  *is-active*) exit 3 ;;
esac
exit 0
STANDIN
chmod 755 "$root/usr/local/sbin/systemctl"
sd_root() { chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
calls() { cat "$root/tmp/systemctl.log" 2>/dev/null || true; : >"$root/tmp/systemctl.log"; }
calls >/dev/null
out=$(sd_root dpkg -i /tmp/old.deb 2>&1) && rc=0 || rc=$?
check "unconfigured install: dpkg -i succeeds" test "$rc" -eq 0
log=$(calls)
check "unconfigured install: daemon-reload, no start" \
  bash -c "grep -q daemon-reload <<<'$log' && ! grep -q 'start agentd' <<<'$log'"
check "unconfigured install: says how to configure" grep -q 'agentd --check-config shows' <<<"$out"
printf 'HZN_EXCHANGE_URL=https://exchange.example.com/v1\nHZN_ORG_ID=o\nHZN_DEVICE_ID=n1\n' \
  >"$root/etc/default/horizon"
install -m 0600 /dev/null "$root/etc/agentd/token"
echo token >"$root/etc/agentd/token"
printf 'AGENTD_TOKEN_FILE=/etc/agentd/token\nAGENTD_VERSION_COMMAND=true\nAGENTD_INSTALL_COMMAND=true\n' \
  >"$root/etc/agentd/conf.d/test.conf"
check "configured: agentd --check-config passes" in_root agentd --check-config
check "upgrade: dpkg -i $new_version succeeds" sd_root dpkg -i /tmp/new.deb
log=$(calls)
check "upgrade: try-restart, no start" \
  bash -c "grep -q 'try-restart agentd.service' <<<'$log' && ! grep -q ' start agentd' <<<'$log'"
check "remove: dpkg -r succeeds" sd_root dpkg -r agentd
log=$(calls)
check "remove: stops agentd and the rollback unit" \
  bash -c "grep -q 'stop agentd.service agentd-rollback.service' <<<'$log'"
check "install over a removed agentd, configured: dpkg -i succeeds" sd_root dpkg -i /tmp/new.deb
log=$(calls)
check "install over a removed agentd, configured: starts it" \
  bash -c "grep -q 'start agentd.service' <<<'$log' && ! grep -q 'try-restart' <<<'$log'"
check "purge: dpkg -P succeeds" sd_root dpkg -P agentd
check "purge: /etc/agentd gone" test ! -e "$root/etc/agentd"
rm -rf "$root/run/systemd/system" "$root/usr/local/sbin/systemctl" "$root/etc/default/horizon"

if [ -n "$old_rpm" ] && [ -n "$new_rpm" ]; then
  root=$work/root-rpm
  make_root "$root"
  rpm_version_of() { in_root rpm -q --queryformat '%{VERSION}-%{RELEASE}' agentd 2>/dev/null; }
  old_version=$(rpm -qp --queryformat '%{VERSION}-%{RELEASE}' "$old_rpm")
  new_version=$(rpm -qp --queryformat '%{VERSION}-%{RELEASE}' "$new_rpm")
  # The stand-in: provides everything agentd requires but rpm's own features.
  mkdir -p "$work/rpmbuild"
  {
    printf 'Name: agentd-test-base\nVersion: 1\nRelease: 1\nSummary: test stand-in\n'
    printf 'License: Apache-2.0\nBuildArch: noarch\n'
    rpm -qpR "$old_rpm" "$new_rpm" | grep -v '^rpmlib(' | sort -u | sed 's/^/Provides: /'
    printf '%%description\nProvides what the agentd package requires, for tests.\n%%files\n'
  } >"$work/base.spec"
  rpmbuild --quiet -bb --define "_topdir $work/rpmbuild" "$work/base.spec" >/dev/null
  cp "$work"/rpmbuild/RPMS/noarch/agentd-test-base-*.rpm "$root/tmp/base.rpm"
  cp "$old_rpm" "$root/tmp/old.rpm"
  cp "$new_rpm" "$root/tmp/new.rpm"
  in_root rpm -i /tmp/base.rpm

  echo "# rpm: install $old_version"
  check "rpm -i succeeds (Requires satisfied, %post runs)" in_root rpm -i /tmp/old.rpm
  check "installed version is $old_version" test "$(rpm_version_of)" = "$old_version"
  check "agentd.conf is %config(noreplace)" bash -c "chroot '$root' rpm -qc agentd | grep -qx /etc/agentd/agentd.conf"
  check "agentd.service enabled (multi-user.target.wants)" \
    test -L "$root/etc/systemd/system/multi-user.target.wants/agentd.service"
  check "rpm -V: files as packaged" in_root rpm -V agentd

  echo "# rpm: configure, then upgrade to $new_version"
  echo 'AGENTD_LOG_LEVEL=debug  # edited by the operator' >>"$root/etc/agentd/agentd.conf"
  edited_sum=$(md5sum <"$root/etc/agentd/agentd.conf")
  mkdir -p "$root/var/lib/agentd"
  echo '{"state":"idle"}' >"$root/var/lib/agentd/member.json"
  check "rpm -U to $new_version succeeds" in_root rpm -U /tmp/new.rpm
  check "installed version is $new_version" test "$(rpm_version_of)" = "$new_version"
  check "operator's edit of agentd.conf kept" test "$(md5sum <"$root/etc/agentd/agentd.conf")" = "$edited_sum"
  check "state kept" test -f "$root/var/lib/agentd/member.json"
  check "still enabled after the upgrade" \
    test -L "$root/etc/systemd/system/multi-user.target.wants/agentd.service"

  echo "# rpm: rollback script"
  mkdir -p "$root/var/lib/agentd/previous/agentd"
  cp "$old_rpm" "$root/var/lib/agentd/previous/agentd/"
  check "crash loop with a kept .rpm: rpm -U --oldpackage" \
    in_root MONITOR_SERVICE_RESULT=start-limit-hit /usr/libexec/agentd/rollback
  check "version after the rollback is $old_version" test "$(rpm_version_of)" = "$old_version"
  check "operator's edit kept through the rollback" test "$(md5sum <"$root/etc/agentd/agentd.conf")" = "$edited_sum"
  check "a second crash loop finds nothing to reinstall: exits 1" \
    bash -c "chroot '$root' env MONITOR_SERVICE_RESULT=start-limit-hit /usr/libexec/agentd/rollback; test \$? -eq 1"

  echo "# rpm: erase"
  check "rpm -e succeeds (%preun, %postun run)" in_root rpm -e agentd
  check "binaries removed" test ! -e "$root/usr/sbin/agentd"
  check "edited agentd.conf saved as .rpmsave" test -f "$root/etc/agentd/agentd.conf.rpmsave"
  check "state kept" test -f "$root/var/lib/agentd/member.json"
  check "disabled" test ! -e "$root/etc/systemd/system/multi-user.target.wants/agentd.service"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
