#!/usr/bin/env bash
# The long form of test/hostile-resources.test.ts (issue #17, attacks 2 and
# 3) at the issue's scale: the default limits, an attacker with 1024
# connections (64 MiB pools, 2 MiB vectors to 1023 receivers that never
# read), five attacker uids sending 253-fd messages to a server with
# RLIMIT_NOFILE 20,000, three whole messages of fds of a file whose FLUSH
# never returns; a victim under another uid calling at 500/s for 20 s each
# time. Needs root and /dev/fuse; ~3 minutes on 2 CPUs. The figures are the
# test's comments (# undisturbed / # under attack / # server ...).
#
#   bench/hostile-resources.sh [TAP ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
KDBUSFS_HOSTILE_LONG=1 exec npx tap --timeout 900 --reporter tap test/hostile-resources.test.ts "$@"
