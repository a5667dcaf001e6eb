#!/usr/bin/env bash
# Issue #17, attack 5 at full scale: test/hostile-cpu.test.ts with CONNS
# attacker connections (default 1022, as measured in the issue: 261,632
# names, then as many matches of seven bloom-mask rules). Prints the test's
# figures (victim p50/p99 during each attack, server memory). Root; a long run.
# usage: bench/hostile-cpu.sh [CONNS=1022]
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTILE_CPU_CONNS=${1:-1022} HOSTILE_CPU_TIMEOUT_MS=1800000 \
  npx tap --timeout 1800 -R tap test/hostile-cpu.test.ts | grep -E '^ *(# [a-zNubt]|not ok)'
