#!/bin/sh
# agentd's guard of anax's upgrade executor (anax-coexistence.md §3.1: one
# executor). The horizon package writes /etc/cron.d/horizon_agent_upgrade in its
# postinst / %post on every install, and that cron job installs any upgrade job
# anax reports `downloaded`. While agentd is installed and configured it is the
# only executor: the cron file is kept aside in /var/lib/agentd/horizon-cron/ and
# put back when agentd is removed.
#
#   cron-guard disable     keep the cron file aside (when agentd is configured)
#   cron-guard restore     put it back (agentd removed), if horizon is still there
#   cron-guard status      say where it is; exit 0 when the executor is off
#
# Called by agentd.service (ExecStartPre), agentd's postinst and its dpkg file
# trigger on /usr/horizon, the rpm %triggerin on horizon, and prerm/%preun.
# Paths can be moved for tests: AGENTD_CRON_FILE, AGENTD_CRON_ASIDE, AGENTD_BIN.
set -eu

cron_file=${AGENTD_CRON_FILE:-/etc/cron.d/horizon_agent_upgrade}
aside_dir=${AGENTD_CRON_ASIDE:-/var/lib/agentd/horizon-cron}
aside=$aside_dir/$(basename "$cron_file")
agentd=${AGENTD_BIN:-/usr/sbin/agentd}

say() { echo "agentd cron-guard: $*" >&2; }

case "${1:-}" in
  disable)
    # An unconfigured agentd upgrades nothing: anax's executor stays in charge.
    if [ "${2:-}" != --force ] && ! "$agentd" --check-config >/dev/null 2>&1; then
      say "agentd is not configured; anax's upgrade executor stays on"
      exit 0
    fi
    if [ -e "$cron_file" ] || [ -L "$cron_file" ]; then
      mkdir -p "$aside_dir"
      chmod 0700 "$aside_dir"
      mv -f "$cron_file" "$aside"
      say "anax's upgrade executor is off: $cron_file kept in $aside"
    fi
    ;;
  restore)
    if [ -e "$aside" ]; then
      if [ -d "$(dirname "$cron_file")" ] && [ ! -e "$cron_file" ]; then
        mv -f "$aside" "$cron_file"
        say "anax's upgrade executor is back: $cron_file"
      else
        rm -f "$aside"
      fi
    fi
    rmdir "$aside_dir" 2>/dev/null || true
    ;;
  status)
    if [ -e "$cron_file" ]; then
      echo "anax's upgrade executor is ON ($cron_file)"
      exit 1
    elif [ -e "$aside" ]; then
      echo "anax's upgrade executor is off ($cron_file kept in $aside)"
    else
      echo "anax's upgrade executor is off (no $cron_file)"
    fi
    ;;
  *)
    echo "usage: cron-guard disable [--force] | restore | status" >&2
    exit 2
    ;;
esac
exit 0
