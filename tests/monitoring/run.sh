#!/usr/bin/env bash
# The monitoring files of packaging/monitoring/ checked by promtool (Debian package
# prometheus): the alerting rules load, their tests pass (each alert fires and
# stays quiet where it should), every query of the Grafana dashboard parses, and
# the metrics file of a lease holder (the exact text the unit tests expect of
# render()) is valid exposition format.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v promtool >/dev/null || { echo "promtool missing: apt-get install prometheus" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

promtool check rules packaging/monitoring/agentd-alerts.yml
# promtool test rules resolves rule_files relative to the test file.
promtool test rules packaging/monitoring/agentd-alerts.test.yml

# The dashboard: valid JSON, and each query is valid PromQL (checked as a recording rule).
python3 - packaging/monitoring/grafana-dashboard.json "$work/dashboard-rules.yml" <<'PY'
import json, sys
dashboard = json.load(open(sys.argv[1]))
lines = ["groups:", "  - name: dashboard", "    rules:"]
n = 0
for panel in dashboard["panels"]:
    for target in panel["targets"]:
        n += 1
        lines.append(f"      - record: dashboard:query{n}")
        lines.append("        expr: " + json.dumps(target["expr"].replace("$group", "line1")))
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
print(f"dashboard: {len(dashboard['panels'])} panels, {n} queries")
PY
promtool check rules "$work/dashboard-rules.yml"

promtool check metrics < tests/monitoring/holder.prom
echo "metrics: tests/monitoring/holder.prom ($(stat -c %s tests/monitoring/holder.prom) bytes) OK"
