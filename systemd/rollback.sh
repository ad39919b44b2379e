#!/bin/sh
# agentd rollback (installed as /usr/libexec/agentd/rollback).
#
# Run by agentd-rollback.service, which agentd.service starts through OnFailure=.
# When agentd crash-looped (its unit hit the start limit), reinstall the agentd
# package that agentd kept in STATE_DIR/previous/agentd/ (a .deb with dpkg -i, an .rpm
# with rpm -U --oldpackage), log what was done, and start agentd again. The
# package used (and agentd's record.json of it) is moved to
# STATE_DIR/rolled-back/, so a second crash loop does not
# reinstall it again: the next run finds nothing to roll back to, says so and
# exits non-zero, and agentd stays failed for the operator.
#
# Usage: rollback [--force] [--state-dir DIR]
#   --force          roll back even when agentd did not hit its start limit
#   --state-dir DIR  agentd's state directory (default $AGENTD_STATE_DIR or
#                    /var/lib/agentd)
# Exit status: 0 rolled back and agentd started, or nothing to do because agentd
# failed for another reason (e.g. its configuration; restarting a previous
# version would not help); 1 no kept package, or reinstalling or starting failed;
# 2 usage.

set -u

unit=agentd.service
state_dir=${AGENTD_STATE_DIR:-/var/lib/agentd}
force=0
lock_wait_seconds=300

# One line per event, key=value fields, as agentd logs. Under systemd stdout is the
# journal and a "<N>" prefix sets the priority.
log() {
  level=$1
  shift
  if [ -n "${JOURNAL_STREAM:-}" ]; then
    printf '<%s>%s\n' "$level" "$*"
  else
    printf '%s\n' "$*" >&2
  fi
}
fail() {
  log 3 "$@"
  exit 1
}

while [ $# -gt 0 ]; do
  case $1 in
    --force) force=1 ;;
    --state-dir) [ $# -ge 2 ] || { log 3 "event=usage error=\"--state-dir needs a value\""; exit 2; }
                 state_dir=$2; shift ;;
    --state-dir=*) state_dir=${1#--state-dir=} ;;
    -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) log 3 "event=usage error=\"unknown argument $1\""; exit 2 ;;
  esac
  shift
done

systemd_running() { [ -d /run/systemd/system ]; }

# Why agentd failed: systemd passes the failed unit's result to OnFailure= units
# (systemd.exec(5), $MONITOR_SERVICE_RESULT); otherwise ask the service manager.
result=${MONITOR_SERVICE_RESULT:-}
if [ -z "$result" ] && systemd_running; then
  result=$(systemctl show --property=Result --value "$unit" 2>/dev/null || true)
fi
# Did agentd hit its start limit? Result=start-limit-hit says so only when the
# limit refused a start requested from outside (systemctl start). When it
# refuses an automatic restart, which is how a crash loop ends, systemd (252,
# Debian 12) keeps the result of the last run (exit-code, signal, core-dump,
# watchdog) and only its log says "Start request repeated too quickly", with
# that run's invocation id. Without that log (no journal), StartLimitBurst
# automatic restarts in a row count too, unless the last exit status is one
# that systemd does not restart (RestartPreventExitStatus=: a bad
# configuration).
start_limit_hit() {
  [ "$result" = start-limit-hit ] && return 0
  systemd_running || return 1
  invocation=${MONITOR_INVOCATION_ID:-$(systemctl show --property=InvocationID --value "$unit" 2>/dev/null)}
  if [ -n "$invocation" ] &&
    journalctl --quiet --no-pager --output=cat _PID=1 UNIT="$unit" INVOCATION_ID="$invocation" 2>/dev/null |
    grep -q 'Start request repeated too quickly'; then
    return 0
  fi
  restarts=$(systemctl show --property=NRestarts --value "$unit" 2>/dev/null)
  burst=$(systemctl show --property=StartLimitBurst --value "$unit" 2>/dev/null)
  case "$restarts:$burst" in
    *[!0-9:]* | :* | *:) return 1 ;;
  esac
  [ "$burst" -gt 0 ] && [ "$restarts" -ge "$burst" ] || return 1
  if [ "${MONITOR_EXIT_CODE:-}" = exited ]; then
    prevent=$(systemctl show --property=RestartPreventExitStatus --value "$unit" 2>/dev/null)
    for status in $prevent; do
      [ "$status" = "${MONITOR_EXIT_STATUS:-}" ] && return 1
    done
  fi
  return 0
}

# agentd's own exits for problems a previous agentd would not fix: usage 2,
# configuration 3, token file 4, state directory or state file 5. They are
# never a broken build, even when they repeated until the start limit.
# systemd gives the last run's exit to OnFailure= units ($MONITOR_EXIT_CODE,
# $MONITOR_EXIT_STATUS; older ones: ask it).
exit_code=${MONITOR_EXIT_CODE:-}
exit_status=${MONITOR_EXIT_STATUS:-}
if [ -z "$exit_code" ] && systemd_running; then
  [ "$(systemctl show --property=ExecMainCode --value "$unit" 2>/dev/null)" = 1 ] && exit_code=exited
  exit_status=$(systemctl show --property=ExecMainStatus --value "$unit" 2>/dev/null || true)
fi
if [ "$force" -eq 0 ] && [ "$exit_code" = exited ]; then
  case $exit_status in
    2 | 3 | 4 | 5)
      log 5 "event=rollback-skipped unit=$unit exit=$exit_status reason=\"agentd exited $exit_status: a usage, configuration, token or state problem, not a broken build (use --force to roll back anyway)\""
      exit 0
      ;;
  esac
fi

if [ "$force" -eq 0 ] && ! start_limit_hit; then
  # OnFailure= also fires for a failure that is not a crash loop (a bad
  # configuration, exit status 3, is not restarted); a previous package would
  # not fix that.
  log 5 "event=rollback-skipped unit=$unit result=${result:-unknown} reason=\"not a crash loop (use --force to roll back anyway)\""
  exit 0
fi

# Which package manager owns the installed agentd decides the kind of package.
if command -v dpkg-query >/dev/null 2>&1 &&
  dpkg-query -W -f='${db:Status-Status}' agentd 2>/dev/null | grep -qx installed; then
  kind=deb
  installed=$(dpkg-query -W -f='${Version}' agentd)
elif command -v rpm >/dev/null 2>&1 && rpm -q --quiet agentd 2>/dev/null; then
  kind=rpm
  installed=$(rpm -q --queryformat '%{VERSION}-%{RELEASE}' agentd)
else
  fail "event=rollback-failed reason=\"agentd is installed by neither dpkg nor rpm\""
fi

# agentd keeps the package of the version before each upgrade it made of a
# package in previous/<package>/ (agentd(8) FILES); agentd's own is previous/agentd/.
previous_dir=$state_dir/previous/agentd
# The newest kept package of that kind (ls -t: newest first). Package file names
# have no newlines or spaces (NAME_VERSION_ARCH.deb, NAME-VERSION-RELEASE.ARCH.rpm).
package=
if [ -d "$previous_dir" ]; then
  # shellcheck disable=SC2012 # see above
  package=$(ls -t "$previous_dir"/*."$kind" 2>/dev/null | head -n 1)
fi
if [ -z "$package" ]; then
  fail "event=rollback-failed installed=$installed reason=\"no kept .$kind package in $previous_dir\""
fi

if [ "$kind" = deb ]; then
  name=$(dpkg-deb --field "$package" Package 2>/dev/null)
  version=$(dpkg-deb --field "$package" Version 2>/dev/null)
else
  name=$(rpm -qp --queryformat '%{NAME}' "$package" 2>/dev/null)
  version=$(rpm -qp --queryformat '%{VERSION}-%{RELEASE}' "$package" 2>/dev/null)
fi
if [ "$name" != agentd ]; then
  fail "event=rollback-failed package=$package reason=\"not an agentd package (name '${name}')\""
fi

log 4 "event=rollback-begin result=${result:-forced} installed=$installed version=$version package=$package"

# dpkg does not wait for its lock (apt may hold it: agentd may have been started
# by a package installation still running); retry for a while. rpm waits by itself.
deadline=$(($(date +%s) + lock_wait_seconds))
while :; do
  if [ "$kind" = deb ]; then
    # Keep the operator's configuration without asking: there is no terminal.
    output=$(dpkg --force-confdef --force-confold -i "$package" 2>&1)
  else
    output=$(rpm -U --oldpackage --replacepkgs "$package" 2>&1)
  fi
  status=$?
  if [ "$status" -eq 0 ]; then
    break
  fi
  if [ "$kind" = deb ] && printf '%s' "$output" | grep -qi 'lock' && [ "$(date +%s)" -lt "$deadline" ]; then
    sleep 5
    continue
  fi
  printf '%s\n' "$output" | while IFS= read -r line; do log 3 "event=rollback-output line=\"$line\""; done
  fail "event=rollback-failed package=$package status=$status reason=\"$kind install failed\""
done
printf '%s\n' "$output" | while IFS= read -r line; do log 6 "event=rollback-output line=\"$line\""; done

# Keep the package, out of the way of a second rollback.
if ! { mkdir -p "$state_dir/rolled-back" && chmod 0700 "$state_dir/rolled-back" &&
  mv -f "$package" "$state_dir/rolled-back/"; }; then
  log 4 "event=rollback-warning package=$package reason=\"could not move the package to $state_dir/rolled-back\""
fi
# agentd's record of that package (record.json, naming it in "file") goes with
# it: left behind, it would tell agentd that previous/agentd/ still holds a copy
# of the running version, and agentd would keep no other for its next upgrade.
record=$previous_dir/record.json
if [ -f "$record" ] && [ ! -e "$package" ] &&
  [ "$(sed -n 's/.*"file":[[:space:]]*"\([^"]*\)".*/\1/p' "$record")" = "$(basename "$package")" ]; then
  if ! mv -f "$record" "$state_dir/rolled-back/$(basename "$package").record.json"; then
    log 4 "event=rollback-warning record=$record reason=\"could not move agentd's record of the package to $state_dir/rolled-back\""
  fi
fi
log 5 "event=rolled-back from=$installed to=$version package=$package"

if ! systemd_running; then
  log 4 "event=restart-skipped reason=\"systemd is not running\""
  exit 0
fi
# The start limit still counts the crash loop; clear it or the start is refused.
systemctl reset-failed "$unit" || true
if ! systemctl restart "$unit"; then
  fail "event=restart-failed unit=$unit version=$version"
fi
log 5 "event=restarted unit=$unit version=$version"
exit 0
