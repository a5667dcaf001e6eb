#!/usr/bin/env bash
# The soak run, long form of test/soak.test.ts: mixed kdbus traffic over
# CONNS connections (test/clients/soak-client.c) against a fresh
# `kdbusfs mount`, every message counted.
#
#   bench/soak.sh [SECONDS=600] [CONNS=200] [RATE=1500]
#
# As root. Environment: WARMUP=60 (seconds of traffic before the warm-up
# figure), SAMPLE=10 (seconds between samples), KILL_EVERY=20 (seconds
# between SIGKILLs of a client process), SEED=1, RSS_BOUND_MIB=32,
# KDBUSFS_MOUNT_ARGS (e.g. --no-passthrough).
#
# Prints the client's samples and counts (messages sent, received, lost,
# duplicated; broadcasts; calls; name operations; reconnects) and checks:
#  - the client's verdict: no message lost, duplicated, corrupted,
#    misdelivered, reordered or received although its SEND failed; every
#    broadcast delivered to each stable subscriber of its topic exactly once
#    or among the drops that subscriber was told of; no hang, no unexpected
#    errno, no client process dying on its own;
#  - no growth: the server's RSS without its pool mappings (the clients'
#    receive pools, as bench/run.sh counts) at the end, traffic paused and
#    drained, is at most RSS_BOUND_MIB above the same figure after WARMUP
#    seconds; its fd count there is the same (±2 for fds still in flight);
#  - back to baseline once every client is gone: only `control` in the root,
#    the server's census (every live object counted) as before the run, its
#    fd count within 2 of the one before the run, and its RSS
#    no higher than at the end of the traffic (+8 MiB).
# Exits non-zero if any check fails.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/long-form.sh
SECONDS_=${1:-600}
CONNS=${2:-200}
RATE=${3:-1500}
WARMUP=${WARMUP:-60}
SAMPLE=${SAMPLE:-10}
KILL_EVERY=${KILL_EVERY:-20}
SEED=${SEED:-1}
RSS_BOUND_MIB=${RSS_BOUND_MIB:-32}

[[ $(id -u) == 0 ]] || { echo "needs root" >&2; exit 2; }
[[ -f dist/lib/cli.js ]] || npm run build >&2
tmp=$(mktemp -d /tmp/kdbusfs-soak.XXXXXX)
chmod 755 "$tmp" # client processes under uids 65534 and 65533 reach the mount through it
mnt=$tmp/kdbus
mkdir "$mnt"
gcc -O2 -Wall -Iinclude -o "$tmp/soak-client" test/clients/soak-client.c || exit 2

serve

fds() { ls "/proc/$server/fd" | wc -l; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$server/status"; }
only_control() {
  for _ in $(seq 100); do [[ $(ls "$mnt") == control ]] && return 0; sleep 0.1; done
  return 1
}

sleep 0.5
fd0=$(fds) rss0=$(rss_kb) census0=$(census "$server" "$tmp/server.log")
echo "server before: fds=$fd0 rss=${rss0}kB census=$census0"
start=$(date +%s)
timeout $((SECONDS_ + WARMUP + 900)) "$tmp/soak-client" "$mnt" "$SECONDS_" "$CONNS" --rate "$RATE" --warmup "$WARMUP" \
  --sample "$SAMPLE" --kill-every "$KILL_EVERY" --seed "$SEED" --server-pid "$server" 2>"$tmp/err" | tee "$tmp/out"
rc=${PIPESTATUS[0]}
echo "elapsed=$(( $(date +%s) - start ))s client exit=$rc"
if [[ -s $tmp/err ]]; then echo "client stderr (first 20 lines):"; head -20 "$tmp/err"; fi
fail=0
((rc == 0)) || fail=1
kill -0 "$server" 2>/dev/null || { echo "SERVER DEAD"; cat "$tmp/server.log"; exit 1; }

# quiesce KEY LABEL: a figure of the client's "quiesce label=LABEL" line
quiesce() { sed -n "s/^quiesce label=$2 .* $1=\([0-9]*\).*/\1/p" "$tmp/out"; }
warm_net=$(quiesce net_kb warmup) end_net=$(quiesce net_kb end) end_rss=$(quiesce rss_kb end)
warm_fds=$(quiesce fds warmup) end_fds=$(quiesce fds end) warm_anon=$(quiesce anon_kb warmup) end_anon=$(quiesce anon_kb end)
if [[ -n $warm_net && -n $end_net ]]; then
  growth=$(( end_net - warm_net ))
  echo "growth after warm-up (RSS without pools, traffic drained): ${warm_net}kB -> ${end_net}kB ($(( growth / 1024 )) MiB, bound $RSS_BOUND_MIB MiB; of it anonymous: ${warm_anon}kB -> ${end_anon}kB); fds $warm_fds -> $end_fds (bound ±2)"
  (( growth > RSS_BOUND_MIB * 1024 )) && { echo "RSS GREW BEYOND THE BOUND"; fail=1; }
  (( end_fds - warm_fds > 2 || warm_fds - end_fds > 2 )) && { echo "FD COUNT CHANGED"; fail=1; }
else
  echo "NO WARM-UP/END FIGURES (is SECONDS > WARMUP?)"
  fail=1
fi

if only_control; then echo "buses left: none"; else echo "BUSES LEFT: $(ls "$mnt" | tr '\n' ' ')"; fail=1; fi
fd1=$(fds)
for _ in $(seq 50); do (( fd1 - fd0 <= 2 && fd0 - fd1 <= 2 )) && break; sleep 0.2; fd1=$(fds); done
rss1=$(rss_kb) census1=$(census "$server" "$tmp/server.log")
if [[ -n $census0 && $census1 == "$census0" ]]; then echo "census: back to the baseline"
else echo "CENSUS NOT BACK: $census0 -> $census1"; fail=1; fi
echo "server after all clients left: fds $fd0 -> $fd1 (bound ±2), rss ${rss0}kB -> ${rss1}kB (at the end of the traffic: ${end_rss:-?}kB, bound +8 MiB)"
(( fd1 - fd0 > 2 || fd0 - fd1 > 2 )) && { echo "FD COUNT NOT BACK"; fail=1; }
[[ -n $end_rss ]] && (( rss1 > end_rss + 8192 )) && { echo "RSS GREW AFTER THE CLIENTS LEFT"; fail=1; }
((fail)) && echo "soak: FAIL" || echo "soak: ok"
exit $fail
