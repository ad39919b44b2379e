#!/usr/bin/env bash
# The demo: builds agentd and the stand-in hub if needed, then rolls a new agent
# version across an HA group. Arguments go to agentd-demo (try --help, --members 20).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target agentd-demo agentd agentctl exchange-standin anax-standin >/dev/null
exec build/release/tests/agentd-demo "$@"
