#!/usr/bin/env bash
# The include graph between agentd/ and upgrade/ has no folder cycle: no file of
# agentd/ that upgrade/ reaches (directly or through other includes) includes
# anything of upgrade/. agentd/ is the library upgrade/ builds on, except its
# composition layer (daemon, main, member...), which upgrade/ never reaches and
# which may include upgrade/. Prints the graph; exits 1 on a cycle.
# Also: cJSON is private to agentd_core's json.cpp (CMakeLists.txt links it
# PRIVATE): no other file of agentd/ or upgrade/ includes <cjson/...> or calls
# cJSON_*; exits 1 when one does.
# Usage: bash tests/include_graph.sh [source-root]
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
cd "$root"

declare -A deps  # file -> space-separated files it includes (repo-relative)
for f in agentd/*.h agentd/*.cpp upgrade/*.h upgrade/*.cpp; do
  [ -e "$f" ] || continue
  dir="${f%%/*}"
  list=""
  while IFS= read -r inc; do
    if [ -e "$inc" ]; then
      list+=" $inc"
    elif [ -e "$dir/$inc" ]; then
      list+=" $dir/$inc"
    fi
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
  deps["$f"]="$list"
done

# agentd/ files reachable from upgrade/.
declare -A reached
queue=()
for f in "${!deps[@]}"; do
  [[ "$f" == upgrade/* ]] || continue
  for d in ${deps[$f]}; do
    [[ "$d" == agentd/* ]] && queue+=("$d")
  done
done
while [ ${#queue[@]} -gt 0 ]; do
  f="${queue[0]}"
  queue=("${queue[@]:1}")
  [ -n "${reached[$f]:-}" ] && continue
  reached["$f"]=1
  for d in ${deps[$f]:-}; do
    [[ "$d" == agentd/* ]] && queue+=("$d")
  done
done

echo "agentd/ files that include upgrade/ (the composition layer):"
status=0
for f in $(printf '%s\n' "${!deps[@]}" | sort); do
  [[ "$f" == agentd/* ]] || continue
  ups=""
  for d in ${deps[$f]}; do [[ "$d" == upgrade/* ]] && ups+=" $d"; done
  [ -n "$ups" ] || continue
  if [ -n "${reached[$f]:-}" ]; then
    echo "  CYCLE $f ->$ups, and upgrade/ includes $f"
    status=1
  else
    echo "  $f ->$ups"
  fi
done
echo "agentd/ files upgrade/ builds on: $(printf '%s\n' "${!reached[@]}" | sort | tr '\n' ' ')"
[ $status -eq 0 ] && echo "include graph: no cycle between agentd/ and upgrade/"

leaks=""
for f in agentd/*.h agentd/*.cpp upgrade/*.h upgrade/*.cpp; do
  [ -e "$f" ] && [ "$f" != agentd/json.cpp ] || continue
  # Comments stripped: a header may name cJSON in prose.
  if sed 's://.*$::' "$f" | grep -qE '#[[:space:]]*include[[:space:]]*[<"]cjson/|cJSON_[A-Za-z]+'; then
    leaks+=" $f"
  fi
done
if [ -n "$leaks" ]; then
  echo "  CJSON outside agentd/json.cpp:$leaks"
  status=1
else
  echo "cJSON: only agentd/json.cpp includes or calls it"
fi
exit $status
