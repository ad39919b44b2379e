#!/usr/bin/env bash
# Scale of one group, measured against its goals: for each group size, every member
# prepared and starting together, agentd alone at its default intervals (fast poll
# 2 s, poll 10 s, lease 120 s, heartbeat 20 s, changes feed 30 s), a real rollout by
# agentd-demo; prints per size
#   412s per acquisition                                  goal <= 0.2
#   handoff gap (release -> next acquire) median / max    goal <= 1 s / <= 2 x fast poll
#   apply makespan (first acquisition to last release)
#     / sum of the members' time under the lease          goal <= 1.05
#   makespan from publish / the same sum (prepare and the first read of the target
#     included: shown, not judged)
#   hub requests per member
# and whether each goal holds. The full run (5, 20, 50, 100 members, 30 s installs)
# takes about two hours; it is meant for a person, not CI. --quick (5 and 20 members,
# 2 s installs, a few minutes) is what tests/bench/bench.sh may call.
#
# Usage: bash tests/bench/scale.sh [--quick] [--sizes "5 20 50 100"] [--install-seconds 30]
#                                  [--out DIR] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/../.."

sizes="5 20 50 100"
install=30
out=build/bench/scale
build=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) sizes="5 20"; install=2 ;;
    --sizes) sizes="$2"; shift ;;
    --install-seconds) install="$2"; shift ;;
    --out) out="$2"; shift ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "scale.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

if [[ $build == 1 ]]; then
  cmake --preset release >/dev/null
  cmake --build --preset release -j2 --target agentd-demo agentd agentctl exchange-standin anax-standin >/dev/null
fi
demo=build/release/tests/agentd-demo
mkdir -p "$out"

# agentd's defaults (protocol.md §5, agentd/coordinator.h Timing).
fast_poll=2
intervals=(--fast-poll $fast_poll --poll 10 --lease 120 --heartbeat 20 --changes 30)

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
echo "agentd alone at its default intervals (${intervals[*]}), installs of ${install}s"
printf '%7s %9s %15s %9s %9s %9s %6s  %s\n' members 412s/acq "handoff med/max" apply/sum "pub/sum" req/memb result goals
failed=0
for n in $sizes; do
  # Prepare and the first observation take a minute or two; each turn about the
  # install plus a few seconds of restart, health check and handoff.
  timeout=$(python3 -c "print(int(300 + $n * ($install + 20)))")
  txt="$out/rollout-$n.txt"
  status=ok
  "$demo" --members "$n" --alone --quiet --out "$out/rollout-$n" "${intervals[@]}" \
    --install-seconds "$install" --timeout "$timeout" > "$txt" 2>"$out/rollout-$n.err" || status=FAILED
  python3 - "$txt" "$n" "$fast_poll" "$status" <<'EOF' || failed=1
import re, sys
txt, n, fast_poll, status = open(sys.argv[1]).read(), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def num(pattern):
    m = re.search(pattern, txt)
    return float(m.group(1)) if m else float("nan")
conflicts = num(r"412s per acquisition: ([0-9.]+)")
median = num(r"handoff gap .*median ([0-9.]+)s")
gap_max = num(r"handoff gap .*max ([0-9.]+)s")
apply = num(r"/ sum of time under the lease: ([0-9.]+)")
publish = num(r"makespan / sum of it: ([0-9.]+)")
requests = num(r"hub requests per member: ([0-9.]+)")
goals = {
    "412": conflicts <= 0.2,
    "median": median <= 1.0,
    "max": gap_max <= 2 * fast_poll,
    "makespan": apply <= 1.05,
}
held = [k for k, v in goals.items() if v]
broken = [k for k, v in goals.items() if not v]
print("%7d %9.2f %7.2f/%-7.2f %9.3f %9.2f %8.1f %6s  %s" % (
    n, conflicts, median, gap_max, apply, publish, requests, status,
    "hold" if not broken else "NOT HELD: " + ", ".join(broken)))
sys.exit(0 if status == "ok" and not broken else 1)
EOF
done
echo "each run's summary, hub-writes.jsonl and member logs: $out/rollout-N{.txt,/}"
exit $failed
