#!/usr/bin/env bash
# The figures agentd is judged by, measured (not asserted): handoff gap from one
# member's release to the next member's acquire for 5 and 20 members, hub requests
# per idle member per minute, peak RSS of an idle agentd, and the stripped binary
# size, the metrics file's size and write cost, download throughput against curl, the share fetched again after a resume,
# peak RSS during a 200 MiB download, and the arm64 build idling under qemu. Takes about
# 25 minutes with tests/bench/scale.sh --quick. Usage: bash tests/bench/bench.sh [IDLE_MINUTES]
set -euo pipefail
cd "$(dirname "$0")/../.."
idle_minutes=${1:-3}
bash tests/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" >/dev/null
demo=build/release/tests/agentd-demo
out=build/bench
mkdir -p "$out"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
strip --strip-all -o "$out/agentd.stripped" build/release/agentd
echo "agentd stripped binary: $(stat -c %s "$out/agentd.stripped") bytes ($(uname -m), MinSizeRel)"

# The metrics file: its size mid-rollout and the cost of one write (fsynced, renamed).
build/release/tests/agentd-metrics-bench "" 1000

# Handoffs: the default fast poll (2 s) with short installs, so the gaps dominate;
# every member beside an anax stand-in (the demo's default).
fast_poll=2
for n in 5 20; do
  "$demo" --members "$n" --quiet --out "$out/rollout-$n" --fast-poll $fast_poll --poll 10 --lease 30 \
    --heartbeat 5 --changes 5 --install-seconds 1 --timeout $((120 + n * 30)) > "$out/rollout-$n.txt" || {
    cat "$out/rollout-$n.txt"; echo "rollout of $n members failed" >&2; exit 1; }
  gap=$(grep 'handoff gap' "$out/rollout-$n.txt" | sed 's/^ *//')
  median=$(echo "$gap" | sed -n 's/.*median \([0-9.]*\)s.*/\1/p')
  echo "$n members: $gap; median / fast poll = $(python3 -c "print(round($median / $fast_poll, 2))")"
  grep -E 'rollout completed|most members|hub requests|invariants' "$out/rollout-$n.txt" | sed 's/^ */    /'
done

# Scale of one group at agentd's default intervals, the quick variant (5 and 20
# members, 2 s installs); the full one (up to 100 members, 30 s installs, about two
# hours) is tests/bench/scale.sh without arguments.
bash tests/bench/scale.sh --quick --no-build --out "$out/scale" || echo "scale goals: not all held (above)"

# A quiet group with agentd's default intervals, agentd alone.
"$demo" --idle "$idle_minutes" --members 5 --alone | sed 's/^ *//'
# The same beside anax stand-ins: agentd learns of jobs from anax's local API, so
# its own hub cost is one conditional group read and one heartbeat write per idle
# heartbeat (600 s); measure over at least two of them.
"$demo" --idle "$(( idle_minutes > 20 ? idle_minutes : 20 ))" --members 5 | sed 's/^ *//'

# Downloads: throughput vs curl, resume after kill -9 at 50 %, peak RSS (200 MiB).
python3 tests/bench/download_bench.py build/release 200 3

# arm64 under qemu-user, as a sanity figure of the cross build (qemu's own memory included).
bash cross/build.sh arm64 --no-packages > "$out/cross-arm64.txt" 2>&1 || {
  tail -20 "$out/cross-arm64.txt"; echo "arm64 cross build failed" >&2; exit 1; }
grep 'stripped' "$out/cross-arm64.txt" | sed 's/^=* *//' || true
python3 tests/bench/qemu_idle.py build/release build/cross-arm64/agentd \
  "$(sed -n 's/^AGENTD_SYSROOT:PATH=//p' build/cross-arm64/CMakeCache.txt)" "$idle_minutes"
