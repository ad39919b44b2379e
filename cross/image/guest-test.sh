#!/bin/bash
# Runs INSIDE a booted board image under qemu (cross/image/boot-test.sh puts it
# on the test disk and has systemd run it through systemd.run= on the kernel
# command line; the guest powers off when it ends). Checks the first boot
# (multi-user target, grown root, provisioning from the boot partition with no
# secret left), agentd READY, then starts exchange-standin on 127.0.0.1 inside
# the guest, installs a test agent package (horizon 1.0.0) and has agentd
# upgrade it to 1.0.1 through its package pipeline (signed manifest, install,
# health). With FOOTPRINT=1 it then leaves agentd idle for 5 minutes and reports
# its RSS, PSS and CPU. Every result line on the console starts "AGENTD-TEST: ".
set -uo pipefail
t_dir=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
. "$t_dir/test.env"  # TOKEN ORG NODE PORT ARCH ROOT_MIB BOOTDIR FOOTPRINT VERSIONS
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

say() { echo "AGENTD-TEST: $*" >/dev/console; }
passed=0
failed=0
check() {  # check DESCRIPTION COMMAND...
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then
    say "ok - $what"
    passed=$((passed + 1))
  else
    say "not ok - $what"
    printf '%s\n' "$out" | tail -n 15 | while IFS= read -r l; do say "#   | $l"; done
    failed=$((failed + 1))
  fi
}
finish() {
  say "# guest script took $SECONDS s"
  say "$passed passed, $failed failed"
  sync
  systemctl poweroff --no-block
  [ "$failed" -eq 0 ]
  exit
}
poll() {  # poll SECONDS COMMAND...
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}
not() { ! "$@"; }
prop() { systemctl show -P "$2" "$1"; }
ms() { echo $(($1 / 1000)); }
journal_has() { journalctl -b -u "$1" -o cat | grep -E "$2"; }

# ---- First boot --------------------------------------------------------------
target_active() { [ "$(prop multi-user.target ActiveState)" = active ]; }
check "boots to multi-user.target" poll 300 target_active
target_active || finish
say "# multi-user.target reached at $(ms "$(prop multi-user.target ActiveEnterTimestampMonotonic)") ms after the kernel started"
say "# $(systemd-analyze time 2>/dev/null | head -n 1)"
settled() { ! systemctl list-jobs --no-legend | grep -q .; }
poll 120 settled || true
no_failed_units() {
  local f
  f=$(systemctl --failed --no-legend --plain)
  echo "$f"
  [ -z "$f" ]
}
check "no failed units" no_failed_units
grown() {
  local mib
  mib=$(($(findmnt -bno SIZE /) / 1048576))
  echo "root file system $mib MiB, image root partition $ROOT_MIB MiB"
  [ "$mib" -gt $((ROOT_MIB + 512)) ]
}
check "first boot grew the root file system to the disk" grown
check "agentd-growroot.service succeeded" test "$(prop agentd-growroot.service Result)" = success
check "the machine id was made on this boot" \
  bash -c '[ -s /etc/machine-id ] && [ "$(cat /etc/machine-id)" != uninitialized ]'

# ---- Provisioning ------------------------------------------------------------
check "agentd-provision.service succeeded" test "$(prop agentd-provision.service Result)" = success
check "it ran before agentd.service" test \
  "$(prop agentd-provision.service InactiveExitTimestampMonotonic)" -lt "$(prop agentd.service ExecMainStartTimestampMonotonic)"
check "journal: provisioning validated the configuration" \
  journal_has agentd-provision.service 'agentd --check-config passed'
check "the provisioning file is gone from the boot partition" test ! -e "$BOOTDIR/agentd-provision.txt"
# shellcheck disable=SC2016
check "token file: root:root 0600, the provisioned token" \
  bash -c '[ "$(stat -c %U:%G:%a /etc/agentd/token)" = root:root:600 ] && [ "$(cat /etc/agentd/token)" = "$1" ]' _ "$TOKEN"
check "/etc/default/horizon: hub, org and node" \
  bash -c "grep -qx 'HZN_EXCHANGE_URL=http://127.0.0.1:$PORT/v1' /etc/default/horizon &&
    grep -qx 'HZN_ORG_ID=$ORG' /etc/default/horizon && grep -qx 'HZN_DEVICE_ID=$NODE' /etc/default/horizon"
check "trusted key: /etc/agentd/trusted.d/provisioned-1.pem 0644" \
  bash -c '[ "$(stat -c %a /etc/agentd/trusted.d/provisioned-1.pem)" = 644 ] && grep -q "BEGIN PUBLIC KEY" /etc/agentd/trusted.d/provisioned-1.pem'
check "conf.d/50-provision.conf names the token file" grep -qx AGENTD_TOKEN_FILE=/etc/agentd/token /etc/agentd/conf.d/50-provision.conf
boot_dev=$(findmnt -no SOURCE "$BOOTDIR")
check "the boot partition is mounted at $BOOTDIR ($boot_dev)" test -b "$boot_dev"
no_token_in() { [ -b "$1" ] && ! grep -qaF "$TOKEN" "$1"; }
check "no secret on the boot partition (its raw blocks)" no_token_in "$boot_dev"
check "no secret in the journal" not bash -c "journalctl -b -o cat | grep -qF '$TOKEN'"
check "no secret in /etc except the token file" not grep -rlF --exclude=token "$TOKEN" /etc

# ---- agentd READY ------------------------------------------------------------
is_active() { [ "$(prop agentd.service ActiveState)" = active ]; }
check "agentd.service active (READY=1) after the first boot" poll 60 is_active
ready_us=$(prop agentd.service ActiveEnterTimestampMonotonic)
start_us=$(prop agentd.service ExecMainStartTimestampMonotonic)
say "# boot-to-READY: agentd READY=1 at $(ms "$ready_us") ms after the kernel started (agentd started at $(ms "$start_us") ms)"
check "agentd --check-config passes" agentd --check-config

# ---- The hub, inside the guest on 127.0.0.1 ------------------------------------
systemd-run --quiet --unit=exchange-standin -p StandardOutput=file:/run/standin.out \
  -p Environment=LD_LIBRARY_PATH="$t_dir/lib" \
  "$t_dir/exchange-standin" --bind 127.0.0.1 --port "$PORT" --state /run/standin.state --log /run/standin.log
hub_up() { grep -q "^listening port=$PORT$" /run/standin.out; }
check "exchange-standin listens on 127.0.0.1:$PORT" poll 60 hub_up
hub=http://127.0.0.1:$PORT/v1
hub_call() {  # hub_call AUTH METHOD PATH [BODY]
  curl -sS --fail-with-body -u "$1" -X "$2" -H 'Content-Type: application/json' ${4:+--data "$4"} "$hub$3"
}
check "hub: create org $ORG" hub_call root/root:rootpw POST "/orgs/$ORG" '{"label":"o","description":"org"}'
check "hub: create org IBM (agent files)" hub_call root/root:rootpw POST /orgs/IBM '{"label":"IBM","description":"agent files"}'
check "hub: create user $ORG/admin" hub_call root/root:rootpw POST "/orgs/$ORG/users/admin" \
  '{"password":"adminpw","admin":true,"email":"admin@example.com"}'
check "hub: create node $ORG/$NODE" hub_call "$ORG/admin:adminpw" PUT "/orgs/$ORG/nodes/$NODE" \
  "{\"token\":\"$TOKEN\",\"name\":\"$NODE\",\"pattern\":\"\",\"arch\":\"$ARCH\",\"publicKey\":\"\",\"softwareVersions\":{\"horizon\":\"1.0.0\"}}"
[ "$failed" -eq 0 ] || finish

# ---- The test agent ----------------------------------------------------------------
old=${VERSIONS%% *}
new=${VERSIONS##* }
check "install the test agent horizon $old (dpkg)" dpkg -i "$t_dir/horizon_${old}_all.deb"
# agentd keeps the running version's package for a rollback: where apt caches it.
cp "$t_dir/horizon_${old}_all.deb" /var/cache/apt/archives/
systemctl start horizon.service
check "horizon.service active" systemctl is-active horizon.service

# ---- agentd against the hub --------------------------------------------------------
systemctl reset-failed agentd.service 2>/dev/null || true
# Before this restart agentd met a hub that was not there yet, then one that did
# not know the node (401): its journal is judged from here on.
cursor=$(journalctl -n 1 --show-cursor | sed -n 's/^-- cursor: //p')
t=$SECONDS
systemctl restart agentd.service  # returns on READY=1 (Type=notify)
start_us=$(prop agentd.service ExecMainStartTimestampMonotonic)
ready_us=$(prop agentd.service ActiveEnterTimestampMonotonic)
check "agentd active again after a restart" is_active
say "# start-to-READY with the hub reachable: $(((ready_us - start_us) / 1000)) ms"
read_node() { journal_has agentd.service 'not in an HA group'; }
check "agentd read its node from the hub" poll 90 read_node
say "# restart to the first hub answer: $((SECONDS - t)) s"

# ---- Upgrade of the test agent through agentd --------------------------------------
css=http://127.0.0.1:$PORT/css/api/v1/objects
css_put() {  # css_put OBJECT FILE META
  curl -sS --fail-with-body -u root/root:rootpw -X PUT -H 'Content-Type: application/octet-stream' \
    --data-binary "@$2" "$css/$1/data" &&
    curl -sS --fail-with-body -u root/root:rootpw -X PUT -H 'Content-Type: application/json' --data "$3" "$css/$1"
}
publish() {  # publish VERSION: package, signed manifest (made on the host), versions, policy
  local v=$1 name=horizon_$1_all.deb
  css_put "IBM/agent_software_files-$v/$name" "$t_dir/$name" \
    "{\"meta\":{\"objectID\":\"$name\",\"objectType\":\"agent_software_files-$v\"}}" &&
    css_put "$ORG/agent_upgrade_manifests/agent-$v" "$t_dir/agent-$v.json" \
      "{\"meta\":{\"objectID\":\"agent-$v\",\"objectType\":\"agent_upgrade_manifests\",\"hashAlgorithm\":\"SHA256\",\"signature\":\"$(cat "$t_dir/agent-$v.json.sig")\"}}" &&
    hub_call root/root:rootpw PUT /orgs/IBM/AgentFileVersion \
      "{\"agentSoftwareVersions\":[\"$v\"],\"agentConfigVersions\":[],\"agentCertVersions\":[]}" &&
    hub_call "$ORG/admin:adminpw" POST "/orgs/$ORG/managementpolicies/up" \
      "{\"label\":\"up\",\"description\":\"\",\"constraints\":[],\"properties\":[],\"patterns\":[],\"enabled\":true,\"start\":\"now\",\"startWindow\":0,\"agentUpgradePolicy\":{\"manifest\":\"$ORG/agent-$v\",\"allowDowngrade\":false}}"
}
installed_version() { dpkg-query -W -f='${Version}' horizon; }
state_field() { sed -n "s/.*\"$1\":[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p" /var/lib/agentd/state.json; }
mgmt_status() { hub_call root/root:rootpw GET "/orgs/$ORG/nodes/$NODE/managementStatus/up"; }
agent_pid=$(prop horizon.service MainPID)
upgraded() {
  [ "$(installed_version)" = "$new" ] || return 1
  [ "$(state_field state)" = succeeded ] && [ "$(state_field version)" = "$new" ] || return 1
  mgmt_status | grep -q '"status": *"successful"' || return 1
  [ "$(prop horizon.service ActiveState)" = active ] && [ "$(prop horizon.service MainPID)" != "$agent_pid" ]
}
t_up=$SECONDS
check "publish horizon $new (package, signed manifest, policy $ORG/up)" publish "$new"
check "agentd upgraded the test agent to $new (dpkg, state succeeded, management status successful, horizon.service restarted)" \
  poll 300 upgraded
if upgraded; then
  say "# upgrade took $((SECONDS - t_up)) s from publishing"
else
  say "# agentd's state: $(state_field state), progress $(state_field progress); status: $(prop agentd.service StatusText)"
  journalctl -b -u agentd.service -o cat | tail -n 25 | while IFS= read -r l; do say "#   | $l"; done
fi
check "the new agent runs: horizon-test-agent $new" journal_has horizon.service "horizon test agent ${new//./\\.}"
# Unsigned manifests are refused (AGENTD_ALLOW_UNSIGNED_MANIFEST is not set):
# prepared means the signature matched the provisioned key.
check "agentd verified the signed manifest and prepared $new (event=prepared)" \
  journal_has agentd.service "event=prepared .*target=${new//./\\.}"
check "previous/ holds horizon $old for a rollback" test -f "/var/lib/agentd/previous/horizon/horizon_${old}_all.deb"
errors_since_restart() {  # succeeds (the check fails) without a cursor
  [ -n "$cursor" ] || { echo "no journal cursor"; return 0; }
  journalctl -u agentd.service --after-cursor="$cursor" -o cat | grep 'level=error'; }
check "no errors in agentd's journal since the restart with the hub set up" not errors_since_restart
check "agentd.service still active" is_active

# ---- Footprint -----------------------------------------------------------------------
if [ "${FOOTPRINT:-0}" = 1 ]; then
  pid=$(prop agentd.service MainPID)
  ticks=$(getconf CLK_TCK)
  cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
  requests() { wc -l </run/standin.log 2>/dev/null || echo 0; }
  c0=$(cpu "$pid")
  r0=$(requests)
  say "# footprint: agentd (pid $pid) idle for 300 s (the upgrade is done, the hub is polled)"
  sleep 300
  c1=$(cpu "$pid")
  rss=$(awk '/^Rss:/ {print $2}' "/proc/$pid/smaps_rollup")
  pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
  cpu_ms=$(((c1 - c0) * 1000 / ticks))
  say "# footprint: rss_kib=$rss pss_kib=$pss peak_rss_kib=$hwm cpu_ms_in_300s=$cpu_ms cpu_percent=$(awk -v m="$cpu_ms" 'BEGIN {printf "%.3f", m / 3000}') hub_writes=$(($(requests) - r0))"
  say "# footprint: memory total $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) KiB, used $(free -k | awk '/^Mem:/ {print $3}') KiB; root fs used $(df -m --output=used / | tail -n 1 | tr -d ' ') MiB"
  check "agentd still the same process after 5 idle minutes" test "$(prop agentd.service MainPID)" = "$pid"
fi
finish
