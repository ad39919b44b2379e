#!/bin/bash
# Boots a Debian 12 container with systemd-nspawn -b, installs the agentd .deb
# and checks it under a real systemd: the unit is active only after READY=1, a
# hung agentd (SIGSTOP) is killed by the watchdog and restarted; agentd upgrades
# itself through its package pipeline to a newer build of its own package
# (published on the hub with a signed manifest and a management policy) and
# runs the new version; a newer build that crash-loops is rolled back by
# agentd-rollback.service and agentd then reports that upgrade as failed or
# rolled back without installing it again; a state file that cannot be written
# leaves agentd up and degraded until it can, and a corrupt one ends it with
# status 5 without a restart or a rollback; `apt remove` then `apt purge` leave
# the system clean. Prints the time from the start of agentd to READY=1 with the
# hub reachable, and how long the upgrade and the rollback took.
#
#   tests/systemd/nspawn-test.sh [AGENTD.deb [exchange-standin]]
#
# Defaults: build/release/packages/agentd_*_amd64.deb (bash
# packaging/build-packages.sh) and build/release/tests/exchange-standin. The hub
# (exchange-standin) runs inside the container on 127.0.0.1; the first checks
# use upgrade commands (shell one-liners on a version file), the upgrade checks
# the package pipeline. The newer builds are the .deb repacked with a higher
# Version (+nspawn1, and +nspawn2 whose agentd exits 1); the manifests are
# signed with an Ed25519 key made for the run (needs openssl and dpkg-deb).
# The container root is made once with mmdebstrap (needs the Debian mirror) and
# cached under /var/cache/agentd-nspawn (AGENTD_NSPAWN_CACHE=DIR elsewhere); each
# run boots a copy of it, deleted at the end. As root, on Debian, with
# systemd-container and mmdebstrap installed. Works without systemd on the host
# (--register=no --keep-unit); commands run in the container through nsenter.
#
# Prints one line per check ("ok - ..." / "not ok - ...") and "N passed, M
# failed"; exits 1 on any failure. AGENTD_NSPAWN_DEBUG=1 prints agentd's
# journal at the end.

# shellcheck disable=SC2317 # functions run through check and poll
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
if [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then
  sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
  exit 2
fi
# shellcheck disable=SC2012 # file names made by CPack
deb=${1:-$(ls "$src"/build/release/packages/agentd_*_amd64.deb 2>/dev/null | tail -n 1)}
standin=${2:-$src/build/release/tests/exchange-standin}
[ -f "$deb" ] || { echo "no .deb (build it with packaging/build-packages.sh or name it)" >&2; exit 2; }
[ -x "$standin" ] || { echo "no exchange-standin at $standin" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "needs root" >&2; exit 2; }
for tool in systemd-nspawn mmdebstrap nsenter openssl dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install systemd-container mmdebstrap)" >&2; exit 2; }
done
t_begin=$(date +%s)

# ---- The container root (cached) ---------------------------------------------
# systemd and dbus to boot; the libraries of agentd and exchange-standin
# (libcpp-httplib); curl for the hub setup.
packages=systemd,systemd-sysv,dbus,curl,libcurl4,libssl3,libcjson1,libsystemd0,libcpp-httplib0.11
cache=${AGENTD_NSPAWN_CACHE:-/var/cache/agentd-nspawn}
base=$cache/bookworm-$(echo "$packages" | md5sum | cut -c1-8)
if [ ! -d "$base" ]; then
  echo "# making the container root $base (once)"
  mkdir -p "$cache"
  rm -rf "$base.tmp"
  mmdebstrap --quiet --mode=root --variant=apt --include="$packages" bookworm "$base.tmp" \
    "deb http://deb.debian.org/debian bookworm main"
  # A fresh machine id on each boot; no getty on the console (nobody logs in).
  : >"$base.tmp/etc/machine-id"
  ln -sf /dev/null "$base.tmp/etc/systemd/system/console-getty.service"
  mv "$base.tmp" "$base"
fi

work=$(mktemp -d /var/tmp/agentd-nspawn.XXXXXX)
root=$work/root
nspawn_pid=
cleanup() {
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    kill -TERM "$nspawn_pid" 2>/dev/null || true  # nspawn asks the container's systemd to power off
    for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$nspawn_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cp -a "$base" "$root"
# Not /tmp: nspawn mounts a tmpfs there.
cp "$deb" "$root/root/agentd.deb"
cp "$standin" "$root/usr/local/bin/exchange-standin"

# ---- Checks ------------------------------------------------------------------
passed=0
failed=0
check() {  # check DESCRIPTION COMMAND...: passes when COMMAND succeeds
  local what=$1 output
  shift
  if output=$("$@" 2>&1); then
    echo "ok - $what"
    passed=$((passed + 1))
  else
    echo "not ok - $what"
    printf '%s\n' "$output" | sed 's/^/#   | /'
    failed=$((failed + 1))
  fi
}
finish() {
  echo "# script took $(($(date +%s) - t_begin)) s"
  echo "$passed passed, $failed failed"
  if [ "$failed" -eq 0 ]; then exit 0; fi
  exit 1
}
not() { ! "$@"; }
# poll SECONDS COMMAND...: until COMMAND succeeds or the deadline passes.
poll() {
  local deadline=$(($(date +%s%N) + $1 * 1000000000))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s%N)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# ---- Boot --------------------------------------------------------------------
machine=agentd-test-$$
systemd-nspawn --quiet --register=no --keep-unit --machine="$machine" -D "$root" -b \
  >"$work/console.log" 2>&1 </dev/null &
nspawn_pid=$!
leader() { pgrep -P "$nspawn_pid" | head -n 1; }
poll 30 leader || true
pid1=$(leader || true)
inside() {  # inside COMMAND...: runs COMMAND in the container (as its root, clean environment)
  nsenter --target "$pid1" --mount --uts --ipc --pid --cgroup -- \
    /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}
prop() { inside systemctl show -P "$2" "$1"; }
journal_has() {  # journal_has UNIT REGEX: the unit's journal of this boot matches
  local j
  j=$(inside journalctl -u "$1" -b -o cat) || return 1
  grep -E "$2" <<<"$j"
}
no_failed_units() {
  local f
  f=$(inside systemctl --failed --no-legend --plain) || return 1
  echo "$f"
  [ -z "$f" ]
}
# The root has no procps: kill and the process table through sh and /proc.
# shellcheck disable=SC2016 # $1 is for that sh
alive() { inside sh -c 'kill -0 "$1"' _ "$1"; }
agentd_processes() { inside sh -c 'grep -lx agentd /proc/[0-9]*/comm' 2>/dev/null; }
booted() {
  local s
  s=$(inside systemctl is-system-running --wait) || true
  [ "$s" = running ] || [ "$s" = degraded ]
}
if [ -z "$pid1" ] || ! poll 60 booted; then
  echo "not ok - container boots (systemd-nspawn -b)"
  sed 's/^/#   | /' "$work/console.log" | tail -n 30
  failed=$((failed + 1))
  finish
fi
check "container boots: systemd is running" booted
check "no failed units after boot" no_failed_units

# ---- The hub, inside the container on 127.0.0.1 -------------------------------
inside systemd-run --quiet --unit=exchange-standin -p StandardOutput=file:/run/standin.out \
  /usr/local/bin/exchange-standin --bind 127.0.0.1 --port 0 --state /run/standin.state --log /run/standin.log
port=
# /run is the container's tmpfs: read it from inside.
hub_port() { port=$(inside sed -n 's/^listening port=\([0-9]*\)$/\1/p' /run/standin.out 2>/dev/null || true); [ -n "$port" ]; }
check "exchange-standin listens" poll 20 hub_port
hub_port || true  # check ran it in a subshell
hub=http://127.0.0.1:$port/v1
hub_call() {  # hub_call AUTH METHOD PATH [BODY]: fails on an HTTP error
  inside curl -sS --fail-with-body -u "$1" -X "$2" -H 'Content-Type: application/json' \
    ${4:+--data "$4"} "$hub$3"
}
token=node-token-0123456789
check "hub: create org o" hub_call root/root:rootpw POST /orgs/o '{"label":"o","description":"org o"}'
check "hub: create user o/admin" hub_call root/root:rootpw POST /orgs/o/users/admin \
  '{"password":"adminpw","admin":true,"email":"admin@example.com"}'
check "hub: create node o/n1" hub_call o/admin:adminpw PUT /orgs/o/nodes/n1 \
  "{\"token\":\"$token\",\"name\":\"n1\",\"pattern\":\"\",\"arch\":\"amd64\",\"publicKey\":\"\",\"softwareVersions\":{\"horizon\":\"1.0.0\"}}"
check "hub: the node authenticates" hub_call "o/n1:$token" GET /orgs/o/nodes/n1
[ "$failed" -eq 0 ] || finish

# ---- Install -------------------------------------------------------------------
echo "# install $(basename "$deb") (unconfigured)"
check "apt-get install succeeds" inside apt-get install -y -q /root/agentd.deb
[ -x "$root/usr/sbin/agentd" ] || finish
check "agentd.service enabled" inside systemctl is-enabled agentd.service
check "unconfigured: not started by the install" not inside systemctl is-active -q agentd.service

# Configuration: the hub, the token, trivial upgrade commands on a version file.
mkdir -p "$root/var/lib/agentd-test"
echo 1.0.0 >"$root/var/lib/agentd-test/version"
printf 'HZN_EXCHANGE_URL=%s\nHZN_FSS_CSSURL=http://127.0.0.1:%s/css\nHZN_ORG_ID=o\nHZN_DEVICE_ID=n1\n' \
  "$hub" "$port" >"$root/etc/default/horizon"
install -m 0600 /dev/null "$root/etc/agentd/token"
echo "$token" >"$root/etc/agentd/token"
mkdir -p "$root/etc/agentd/conf.d"
write_conf() {  # write_conf VERSION_COMMAND
  cat >"$root/etc/agentd/conf.d/test.conf" <<EOF
AGENTD_TOKEN_FILE=/etc/agentd/token
AGENTD_LOG_LEVEL=debug
AGENTD_UPGRADE_METHOD=commands
AGENTD_VERSION_COMMAND=$1
AGENTD_INSTALL_COMMAND=echo "\$AGENTD_TARGET_VERSION" >/var/lib/agentd-test/version
AGENTD_RESTART_COMMAND=true
AGENTD_HEALTH_COMMAND=true
AGENTD_ROLLBACK_COMMAND=echo "\$AGENTD_PREVIOUS_VERSION" >/var/lib/agentd-test/version
EOF
}
write_conf 'cat /var/lib/agentd-test/version'
# The commands method needs the looser sandbox (agentd(8)); the package method
# below runs in the unit's own, strict one.
inside mkdir -p /etc/systemd/system/agentd.service.d
inside cp /usr/share/doc/agentd/examples/commands-method.conf /etc/systemd/system/agentd.service.d/
inside systemctl daemon-reload
check "configured: agentd --check-config passes" inside agentd --check-config


# ---- active only after READY=1 --------------------------------------------------
echo "# active (running) only after READY=1"
# READY=1 follows the version command; a slow one holds agentd in "activating"
# while its process already runs.
write_conf 'sleep 3; cat /var/lib/agentd-test/version'
inside systemctl start --no-block agentd.service
main_started() { [ "$(prop agentd.service MainPID)" != 0 ]; }
poll 10 main_started || true
state_during=$(prop agentd.service ActiveState)/$(prop agentd.service SubState)
check "agentd runs but the unit is activating/start before READY ($state_during)" \
  test "$state_during" = activating/start
is_active() { [ "$(prop agentd.service ActiveState)" = active ]; }
check "then the unit becomes active" poll 20 is_active
check "SubState is running" test "$(prop agentd.service SubState)" = running
start_us=$(prop agentd.service ExecMainStartTimestampMonotonic)
active_us=$(prop agentd.service ActiveEnterTimestampMonotonic)
delay_ms=$(((active_us - start_us) / 1000))
check "active entered >= 3 s after the start (the version command), $delay_ms ms" test "$delay_ms" -ge 3000
check "journal: agentd logged started" journal_has agentd.service started

# ---- start-to-READY with the hub reachable -----------------------------------------
echo "# start to READY=1, hub reachable"
write_conf 'cat /var/lib/agentd-test/version'
inside systemctl stop agentd.service
times=()
for i in 1 2 3; do
  inside systemctl reset-failed agentd.service 2>/dev/null || true
  inside systemctl start agentd.service  # returns on READY=1 (Type=notify)
  start_us=$(prop agentd.service ExecMainStartTimestampMonotonic)
  active_us=$(prop agentd.service ActiveEnterTimestampMonotonic)
  times+=("$(((active_us - start_us) / 1000))")
  if [ "$i" -lt 3 ]; then inside systemctl stop agentd.service; fi
done
echo "# start-to-READY (ExecMainStart -> ActiveEnter): ${times[*]} ms"
all_below() { local limit=$1 t; shift; for t; do [ "$t" -lt "$limit" ] || return 1; done; }
check "each start returned active, READY within 5 s (${times[*]} ms)" all_below 5000 "${times[@]}"
check "active now" is_active
# "not in an HA group" needs the node's groups from the hub.
check "agentd read its node from the hub" journal_has agentd.service 'not in an HA group'
check "no warnings or errors in agentd's journal" not journal_has agentd.service 'level=(warn|error)'
# The first hub answer (the plan) after the last start.
main_pid=$(prop agentd.service MainPID)
plan_us=$(inside journalctl -b "_PID=$main_pid" -o json | grep -m 1 'event=plan' |
  sed -n 's/.*"__MONOTONIC_TIMESTAMP" *: *"\([0-9]*\)".*/\1/p' || true)
if [ -n "$plan_us" ]; then
  echo "# start to the first hub answer (event=plan): $(((plan_us - start_us) / 1000)) ms (READY=1 comes before any hub request)"
fi

# ---- watchdog -----------------------------------------------------------------
echo "# watchdog: a stopped (SIGSTOP) agentd is killed and restarted"
# Runtime drop-in (/run): the package's files and the purge check stay untouched.
inside mkdir -p /run/systemd/system/agentd.service.d
printf '[Service]\nWatchdogSec=3s\nRestartSec=1s\n' >"$work/watchdog.conf"
inside sh -c 'cat >/run/systemd/system/agentd.service.d/watchdog.conf' <"$work/watchdog.conf"
inside systemctl daemon-reload
inside systemctl reset-failed agentd.service 2>/dev/null || true
inside systemctl restart agentd.service
check "WatchdogUSec is 3 s" test "$(prop agentd.service WatchdogUSec)" = 3s
old_pid=$(prop agentd.service MainPID)
restarts_before=$(prop agentd.service NRestarts)
# Alive: several watchdog intervals pass without a restart.
sleep 7
check "a running agentd pings the watchdog (no restart for 7 s)" \
  test "$(prop agentd.service MainPID)" = "$old_pid" -a "$(prop agentd.service NRestarts)" = "$restarts_before"
t_stop=$(date +%s%N)
# shellcheck disable=SC2016
inside sh -c 'kill -STOP "$1"' _ "$old_pid"
restarted() {
  local p
  p=$(prop agentd.service MainPID)
  [ "$p" != 0 ] && [ "$p" != "$old_pid" ] && is_active
}
check "after SIGSTOP a new agentd is active" poll 30 restarted
echo "# watchdog restart took $((($(date +%s%N) - t_stop) / 1000000)) ms after SIGSTOP (WatchdogSec=3s, RestartSec=1s)"
check "the journal says the watchdog fired" \
  journal_has agentd.service 'Watchdog timeout' 
check "NRestarts went up by 1" test "$(prop agentd.service NRestarts)" -eq $((restarts_before + 1))
check "the stopped process is gone" not alive "$old_pid"
check "agentd-rollback.service not triggered" test "$(prop agentd-rollback.service ActiveEnterTimestampMonotonic)" = 0
inside rm -rf /run/systemd/system/agentd.service.d
inside systemctl daemon-reload

# ---- self-upgrade through the package pipeline ----------------------------------
echo "# agentd upgrades itself to a newer build of its package (AGENTD_UPGRADE_METHOD=packages)"
# The newer builds are the tested .deb repacked with a higher Version: the same
# binary, so the new version shows in dpkg and in a new MainPID. "broken"
# replaces agentd with a program that exits 1 (the unit files stay, or dpkg
# would remove them).
deb_version=$(dpkg-deb --field "$deb" Version)
deb_arch=$(dpkg-deb --field "$deb" Architecture)
good_version=$deb_version+nspawn1
broken_version=$deb_version+nspawn2
deb_file_name() { echo "agentd_${1//:/%3a}_$deb_arch.deb"; }  # as apt names it (an epoch's ':' is %3a)
repack() {  # repack VERSION OUT [broken]
  local dir=$work/repack
  rm -rf "$dir"
  dpkg-deb -R "$deb" "$dir"
  sed -i "s/^Version: .*/Version: $1/" "$dir/DEBIAN/control"
  if [ "${3:-}" = broken ]; then
    printf '#!/bin/sh\nexit 1\n' >"$dir/usr/sbin/agentd"
    (cd "$dir" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
  fi
  dpkg-deb -b --root-owner-group "$dir" "$2" >/dev/null
  rm -rf "$dir"
}
repack "$good_version" "$work/good.deb"
repack "$broken_version" "$work/broken.deb" broken
# The publisher's key; agentd trusts its public half.
openssl genpkey -algorithm ed25519 -out "$work/publisher.key" 2>/dev/null
openssl pkey -in "$work/publisher.key" -pubout -out "$root/etc/agentd/trusted.d/publisher.pem"
chmod 0644 "$root/etc/agentd/trusted.d/publisher.pem"
# agentd keeps the running version's package for a rollback; the tested .deb
# was installed from a file, so put it where apt would have cached it.
cp "$deb" "$root/var/cache/apt/archives/$(deb_file_name "$deb_version")"

css=http://127.0.0.1:$port/css/api/v1/objects
css_put() {  # css_put OBJECT FILE META: the object's data (FILE in the container), then its metadata
  inside curl -sS --fail-with-body -u root/root:rootpw -X PUT -H 'Content-Type: application/octet-stream' \
    --data-binary "@$2" "$css/$1/data" &&
    inside curl -sS --fail-with-body -u root/root:rootpw -X PUT -H 'Content-Type: application/json' \
      --data "$3" "$css/$1"
}
policy_method=POST
publish() {  # publish VERSION DEB: the package, its signed manifest, the published versions, policy o/up
  local v=$1 name sha size manifest sig versions
  name=$(deb_file_name "$v")
  sha=$(sha256sum "$2" | cut -d ' ' -f 1)
  size=$(stat -c %s "$2")
  mkdir -p "$root/root/publish"
  cp "$2" "$root/root/publish/$name"
  manifest=$root/root/publish/agent-$v.json
  printf '{"softwareUpgrade":{"files":["%s"],"version":"%s","sha256":{"%s":"%s"},"sizes":{"%s":%s}},"certificateUpgrade":{"files":[],"version":""},"configurationUpgrade":{"files":[],"version":""}}' \
    "$name" "$v" "$name" "$sha" "$name" "$size" >"$manifest"
  sig=$(openssl pkeyutl -sign -rawin -inkey "$work/publisher.key" -in "$manifest" | base64 -w 0) || return 1
  versions=$(printf '"%s",' "${published[@]}" "$v")
  published+=("$v")
  css_put "IBM/agent_software_files-$v/$name" "/root/publish/$name" \
    "{\"meta\":{\"objectID\":\"$name\",\"objectType\":\"agent_software_files-$v\"}}" &&
    css_put "o/agent_upgrade_manifests/agent-$v" "/root/publish/agent-$v.json" \
      "{\"meta\":{\"objectID\":\"agent-$v\",\"objectType\":\"agent_upgrade_manifests\",\"hashAlgorithm\":\"SHA256\",\"signature\":\"$sig\"}}" &&
    hub_call root/root:rootpw PUT /orgs/IBM/AgentFileVersion \
      "{\"agentSoftwareVersions\":[${versions%,}],\"agentConfigVersions\":[],\"agentCertVersions\":[]}" &&
    hub_call o/admin:adminpw "$policy_method" /orgs/o/managementpolicies/up \
      "{\"label\":\"up\",\"description\":\"\",\"constraints\":[],\"properties\":[],\"patterns\":[],\"enabled\":true,\"start\":\"now\",\"startWindow\":0,\"agentUpgradePolicy\":{\"manifest\":\"o/agent-$v\",\"allowDowngrade\":false}}"
}
published=()

# agentd upgrades its own package: the package pipeline with agentd as the agent,
# in the unit's strict sandbox.
inside rm -rf /etc/systemd/system/agentd.service.d
inside systemctl daemon-reload
score=$(inside systemd-analyze security --no-pager agentd.service | sed -n 's/.*Overall exposure level for agentd.service: \([0-9.]*\).*/\1/p')
check "systemd-analyze security agentd.service: ${score:-?} (goal: 3.5 or less)" \
  awk -v s="$score" 'BEGIN { exit !(s != "" && s + 0 <= 3.5) }'
cat >"$root/etc/agentd/conf.d/test.conf" <<EOF
AGENTD_TOKEN_FILE=/etc/agentd/token
AGENTD_LOG_LEVEL=debug
AGENTD_UPGRADE_METHOD=packages
AGENTD_PACKAGE_SYSTEM=deb
AGENTD_AGENT_PACKAGE=agentd
AGENTD_AGENT_UNIT=agentd.service
AGENTD_TRUSTED_KEYS_DIR=/etc/agentd/trusted.d
AGENTD_VERSION_COMMAND=
AGENTD_HEALTH_TIMEOUT_SECONDS=30
AGENTD_CHANGES_SECONDS=0.5
AGENTD_POLL_SECONDS=1
AGENTD_IDLE_HEARTBEAT_SECONDS=5
EOF
check "packages configuration: agentd --check-config passes" inside agentd --check-config
inside systemctl reset-failed agentd.service 2>/dev/null || true
inside systemctl restart agentd.service
check "agentd active with the packages method" is_active
check "hub: create org IBM (shared agent files)" hub_call root/root:rootpw POST /orgs/IBM '{"label":"IBM","description":"agent files"}'
# shellcheck disable=SC2016 # dpkg-query's format
installed_version() { chroot "$root" dpkg-query -W -f='${Version}' agentd; }
state_field() {  # state_field KEY: a string field of agentd's state file
  sed -n "s/.*\"$1\":[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p" "$root/var/lib/agentd/state.json"
}
mgmt_status() { hub_call root/root:rootpw GET /orgs/o/nodes/n1/managementStatus/up; }
upgraded_pid=
upgraded() {  # the new package, agentd's state says so, and a new agentd process runs it
  [ "$(installed_version)" = "$good_version" ] || return 1
  [ "$(state_field state)" = succeeded ] && [ "$(state_field version)" = "$good_version" ] || return 1
  mgmt_status | grep -q '"status": *"successful"' || return 1
  upgraded_pid=$(prop agentd.service MainPID)
  is_active && [ "$upgraded_pid" != 0 ] && [ "$upgraded_pid" != "$before_pid" ]
}
before_pid=$(prop agentd.service MainPID)
check "installed version before: $deb_version" test "$(installed_version)" = "$deb_version"
t_upgrade=$(date +%s%N)
check "publish $good_version (package, signed manifest, policy o/up)" publish "$good_version" "$work/good.deb"
policy_method=PUT
failed_before=$failed
check "agentd upgraded itself to $good_version (dpkg, state succeeded, management status successful, new MainPID)" \
  poll 60 upgraded
self_upgraded=no
if [ "$failed" -eq "$failed_before" ]; then
  self_upgraded=yes
  echo "# self-upgrade took $((($(date +%s%N) - t_upgrade) / 1000000)) ms from publishing"
else
  echo "# agentd's state: $(state_field state), progress $(state_field progress), target $(state_field targetVersion), version $(state_field version); status: $(prop agentd.service StatusText)"
fi
check "journal: the new agentd started at $good_version" \
  journal_has agentd.service "event=started .*version=${good_version//+/\\+}"
check "one install run, exit status 0" \
  bash -c "[ \"\$(ls -d '$root'/var/lib/agentd/runs/install-* | wc -l)\" = 1 ] && grep -qx 0 '$root'/var/lib/agentd/runs/install-*/exit-status"
check "the install ran in a transient unit (agentd-install-*.service)" \
  journal_has 'agentd-install-*.service' 'agentd-install-[0-9a-f]+\.service'
kept_old() { test -f "$root/var/lib/agentd/previous/agentd/$(deb_file_name "$deb_version")"; }
check "previous/ holds the old package ($(deb_file_name "$deb_version"))" kept_old
# (A warning is expected: the new agentd starts from the package's postinst,
# while dpkg still has the package half-configured.)
check "no errors in agentd's journal since the switch" not journal_has agentd.service 'level=error'

# ---- a crash-looping new version is rolled back by agentd-rollback.service ---------
if [ "$self_upgraded" != yes ]; then
  echo "not ok - crash-loop rollback not tried: the self-upgrade above did not complete"
  failed=$((failed + 1))
else
  echo "# a crash-looping $broken_version is rolled back by agentd-rollback.service"
  # Restart after 1 s instead of 5: the start limit (5 starts in 10 min) is hit in
  # seconds. The limit counts every start: reset-failed clears the starts above.
  inside mkdir -p /run/systemd/system/agentd.service.d
  printf '[Service]\nRestartSec=1s\n' >"$work/crashloop.conf"
  inside sh -c 'cat >/run/systemd/system/agentd.service.d/crashloop.conf' <"$work/crashloop.conf"
  inside systemctl daemon-reload
  inside systemctl reset-failed agentd.service 2>/dev/null || true
  rollback_runs() { prop agentd-rollback.service ExecMainStartTimestampMonotonic; }
  check "agentd-rollback.service has not run yet" test "$(rollback_runs)" = 0
  t_broken=$(date +%s%N)
  check "publish $broken_version (agentd exits 1 at once)" publish "$broken_version" "$work/broken.deb"
  rolled_back_by_unit() {
    [ "$(rollback_runs)" != 0 ] && [ "$(prop agentd-rollback.service ActiveState)" = inactive ] &&
      [ "$(installed_version)" = "$good_version" ] && is_active
  }
  failed_before=$failed
  check "agentd-rollback.service ran, $good_version is installed again and agentd.service is active" \
    poll 60 rolled_back_by_unit
  if [ "$failed" -eq "$failed_before" ]; then
    echo "# crash loop to rollback took $((($(date +%s%N) - t_broken) / 1000000)) ms from publishing (RestartSec=1s)"
  fi
  check "the crash loop hit the start limit" journal_has agentd.service 'Start request repeated too quickly|start-limit-hit'
  check "the broken version was installed by agentd (an install run for it)" \
    bash -c "grep -l '$broken_version' '$root'/var/lib/agentd/runs/install-*/output.log"
  check "rollback unit logged rolled-back from $broken_version to $good_version" \
    journal_has agentd-rollback.service "event=rolled-back from=${broken_version//+/\\+} to=${good_version//+/\\+}"
  check "rollback unit logged restarted" journal_has agentd-rollback.service 'event=restarted unit=agentd.service'
  check "agentd-rollback.service succeeded" test "$(prop agentd-rollback.service Result)" = success
  check "the used package moved to rolled-back/" \
    test -f "$root/var/lib/agentd/rolled-back/$(deb_file_name "$good_version")"
  # Else agentd would take previous/agentd/ for a copy of the running version.
  check "agentd's record of it too: previous/agentd/ names no package that is gone" \
    test ! -e "$root/var/lib/agentd/previous/agentd/record.json"
  gave_up() {  # agentd reports the upgrade to the broken version as rolled back or failed
    local s
    s=$(state_field state)
    [ "$s" = rolledback ] || [ "$s" = failed ] || return 1
    [ "$(state_field failedTarget)" = "$broken_version" ] || return 1
    mgmt_status | grep -Eq '"status": *"(rollback successful|failed)"'
  }
  check "agentd reports the upgrade to $broken_version as rolled back or failed (state, management status)" \
    poll 60 gave_up
  echo "# agentd's state: $(state_field state) ($(state_field message))"
  check "agentd did not install $broken_version again (no second install run for it)" \
    test "$(grep -l "$broken_version" "$root"/var/lib/agentd/runs/install-*/output.log 2>/dev/null | wc -l)" = 1
  check "still $good_version installed" test "$(installed_version)" = "$good_version"
  check "agentd.service active" is_active
fi
inside rm -rf /run/systemd/system/agentd.service.d /root/publish
inside systemctl daemon-reload
rm -f "$root/var/cache/apt/archives/$(deb_file_name "$deb_version")"

# ---- one executor: anax's cron executor stays off beside agentd -------------------
echo "# the horizon package's cron executor is kept aside while agentd is configured"
# A stand-in for the horizon package: like the real one, its postinst writes the
# upgrade cron file on every install and its prerm removes it.
horizon_deb() {  # horizon_deb VERSION OUT
  local dir=$work/horizon-pkg
  rm -rf "$dir"
  mkdir -p "$dir/DEBIAN" "$dir/usr/horizon/bin"
  printf '#!/bin/sh\necho anax %s\n' "$1" >"$dir/usr/horizon/bin/anax"
  chmod 0755 "$dir/usr/horizon/bin/anax"
  printf 'Package: horizon\nVersion: %s\nArchitecture: all\nMaintainer: test <test@example.org>\nDescription: horizon test package\n' \
    "$1" >"$dir/DEBIAN/control"
  printf '#!/bin/sh\nset -e\necho "*/5 * * * * root /usr/horizon/bin/agent-auto-upgrade.sh 2>&1|/usr/bin/logger -t AgentAutoUpgrade" >/etc/cron.d/horizon_agent_upgrade\n' \
    >"$dir/DEBIAN/postinst"
  printf '#!/bin/sh\nrm -f /etc/cron.d/horizon_agent_upgrade\n' >"$dir/DEBIAN/prerm"
  chmod 0755 "$dir/DEBIAN/postinst" "$dir/DEBIAN/prerm"
  dpkg-deb -b --root-owner-group "$dir" "$2" >/dev/null
  rm -rf "$dir"
}
mkdir -p "$root/etc/cron.d"  # cron's directory (the horizon package expects cron)
horizon_deb 1.0.0 "$root/root/horizon-1.0.0.deb"
horizon_deb 1.1.0 "$root/root/horizon-1.1.0.deb"
cron=$root/etc/cron.d/horizon_agent_upgrade
aside=$root/var/lib/agentd/horizon-cron/horizon_agent_upgrade
check "agentd is configured and active" is_active
check "dpkg -i horizon 1.0.0 succeeds" inside dpkg -i /root/horizon-1.0.0.deb
check "its cron file was kept aside by agentd's trigger" test ! -e "$cron" -a -f "$aside"
check "dpkg -i horizon 1.1.0 (postinst rewrites the cron file) succeeds" inside dpkg -i /root/horizon-1.1.0.deb
check "after the horizon upgrade the cron file is aside again" test ! -e "$cron" -a -f "$aside"
check "cron-guard status: executor off" inside /usr/libexec/agentd/cron-guard status
# A cron file that appears by other means is kept aside at agentd's next start.
cp "$aside" "$cron"
check "restart agentd" inside systemctl restart agentd.service
check "agentd.service (ExecStartPre) kept it aside" test ! -e "$cron" -a -f "$aside"

# ---- the state cannot be written, or is corrupt -----------------------------------
echo "# a state that cannot be written: agentd stays up (degraded) and recovers; a corrupt one: exit 5, no restart, no rollback"
inside systemctl reset-failed agentd.service 2>/dev/null || true
# Every write of the state fails (the temporary file's name is taken by a
# directory), as on a full disk.
mkdir -p "$root/var/lib/agentd/state.json.tmp/x"
inside systemctl restart agentd.service
degraded() { prop agentd.service StatusText | grep -q '^degraded: '; }
check "with an unwritable state agentd degrades (STATUS says why) instead of exiting" poll 60 degraded
check "... and is active (READY=1)" is_active
pid_degraded=$(prop agentd.service MainPID)
restarts_degraded=$(prop agentd.service NRestarts)
# Alive: nothing restarts it for a while.
sleep 5
check "... the same process for 5 s, no restart" \
  test "$(prop agentd.service MainPID)" = "$pid_degraded" -a "$(prop agentd.service NRestarts)" = "$restarts_degraded"
rm -rf "$root/var/lib/agentd/state.json.tmp"
check "space again: agentd recovers in place (no longer degraded)" poll 90 not degraded
check "... the same process" test "$(prop agentd.service MainPID)" = "$pid_degraded"
inside systemctl stop agentd.service
cp "$root/var/lib/agentd/state.json" "$work/state.json.good"
version_before=$(installed_version)
kept_before=$(ls "$root/var/lib/agentd/rolled-back" 2>/dev/null | wc -l)
echo '{"format":1,"state":"upgr' >"$root/var/lib/agentd/state.json"
inside systemctl start agentd.service || true
exited_5() { [ "$(prop agentd.service ExecMainStatus)" = 5 ] && [ "$(prop agentd.service ActiveState)" = failed ]; }
check "a corrupt state file: agentd exits 5 and is not restarted" poll 30 exited_5
check "... NRestarts stays 0 (RestartPreventExitStatus)" test "$(prop agentd.service NRestarts)" = 0
check "... the rollback unit ran and skipped: exit 5 is not a broken build" \
  poll 30 journal_has agentd-rollback.service 'event=rollback-skipped unit=agentd.service exit=5'
check "... nothing was rolled back ($version_before still installed)" \
  test "$(installed_version)" = "$version_before" -a "$(ls "$root/var/lib/agentd/rolled-back" 2>/dev/null | wc -l)" = "$kept_before"
cp "$work/state.json.good" "$root/var/lib/agentd/state.json"
inside systemctl reset-failed agentd.service agentd-rollback.service 2>/dev/null || true
inside systemctl start agentd.service
check "state restored: agentd active again" poll 30 is_active

# ---- remove, purge ------------------------------------------------------------
echo "# apt remove"
new_pid=$(prop agentd.service MainPID)
check "apt-get remove succeeds" inside apt-get remove -y -q agentd
check "agentd stopped (process gone)" not alive "$new_pid"
# The unit file is gone; postrm keeps the enable state as a mask (as dh_installsystemd).
load_state=$(prop agentd.service LoadState)
check "unit not loadable any more (LoadState=$load_state)" \
  bash -c "[ '$load_state' = masked ] || [ '$load_state' = not-found ]"
check "binaries and units removed" test ! -e "$root/usr/sbin/agentd" -a ! -e "$root/usr/lib/systemd/system/agentd.service"
check "configuration kept" test -f "$root/etc/agentd/agentd.conf" -a -f "$root/etc/agentd/conf.d/test.conf"
check "state directory kept" test -d "$root/var/lib/agentd"
check "dpkg status rc" bash -c "test \"\$(chroot '$root' dpkg-query -W -f='\${db:Status-Abbrev}' agentd | tr -d ' ')\" = rc"
check "removing agentd put anax's cron file back" test -f "$cron" -a ! -e "$aside"
check "dpkg -r horizon succeeds" inside dpkg -r horizon
echo "# apt purge"
check "apt-get purge succeeds" inside apt-get purge -y -q agentd
check "package unknown to dpkg" bash -c "! chroot '$root' dpkg-query -W agentd"
check "/etc/agentd gone" test ! -e "$root/etc/agentd"
check "/var/lib/agentd gone" test ! -e "$root/var/lib/agentd"
check "nothing named agentd left in the root" \
  bash -c "! find '$root' -xdev -name '*agentd*' ! -path '$root/root/agentd.deb' ! -path '$root/var/lib/agentd-test*' | grep ."
check "no agentd process left" not agentd_processes
agentd_units() { inside systemctl list-units --all --no-legend --plain 'agentd*' | grep .; }
check "no agentd unit loaded" not agentd_units
check "no failed units" no_failed_units

if [ -n "${AGENTD_NSPAWN_DEBUG:-}" ]; then inside journalctl -b -u agentd.service -o short-monotonic >&2; fi
finish
