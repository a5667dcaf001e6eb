#!/usr/bin/env bash
# The long form of test/fuzz.test.ts: the same client (test/clients/fuzz-client.c)
# with more processes, requests and time, against a fresh `kdbusfs mount`.
#
#   bench/fuzz-long.sh [SECONDS=120] [PROCS=32] [REQUESTS=100000000] [SEED=1] [ROUNDS=1]
#
# As root; KDBUSFS_MOUNT_ARGS adds arguments to `kdbusfs mount` (e.g.
# --no-passthrough for page-cache pools). Each round: fuzz for SECONDS
# (or REQUESTS in all), then a fresh client makes a bus and passes a message byte for byte, and the server's
# leftovers are measured. Prints the client's counts per round, the findings
# it wrote (HANG, STUCK, VIOLATION, CRASH, ZOMBIE lines) and the server's fd
# count, RSS and census (every live object counted) against the baseline;
# exits non-zero on a hang, a violation, a census not back at the baseline,
# a dead server, a failed check or a bus left over.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/long-form.sh
SECONDS_=${1:-120}
PROCS=${2:-32}
REQUESTS=${3:-100000000}
SEED=${4:-1}
ROUNDS=${5:-1}

[[ $(id -u) == 0 ]] || { echo "needs root" >&2; exit 2; }
tmp=$(mktemp -d /tmp/kdbusfs-fuzz-long.XXXXXX)
chmod 755 "$tmp"
mnt=$tmp/kdbus
mkdir "$mnt"
gcc -O2 -Wall -Wno-format -Iinclude -o "$tmp/fuzz-client" test/clients/fuzz-client.c || exit 2

serve

usage() { echo "$(ls /proc/$server/fd | wc -l) $(awk '/VmRSS/ {print $2}' /proc/$server/status)"; }
only_control() {
  for _ in $(seq 100); do [[ $(ls "$mnt") == control ]] && return 0; sleep 0.1; done
  return 1
}

fail=0
timeout 30 "$tmp/fuzz-client" check "$mnt" 0-fuzz-warmup >/dev/null || { echo "warm-up check failed"; fail=1; }
only_control
sleep 0.3
read -r fd0 rss0 < <(usage)
census0=$(census "$server" "$tmp/server.log")
echo "baseline: fds=$fd0 rss=${rss0}kB census=$census0"
for round in $(seq "$ROUNDS"); do
  seed=$((SEED + round - 1))
  echo "== round $round: seed=$seed procs=$PROCS requests=$REQUESTS seconds=$SECONDS_"
  start=$(date +%s)
  timeout $((SECONDS_ + 120)) "$tmp/fuzz-client" fuzz "$mnt" "$seed" "$PROCS" "$REQUESTS" "$SECONDS_" \
    >"$tmp/out" 2>"$tmp/err"
  rc=$?
  echo "elapsed=$(( $(date +%s) - start ))s exit=$rc"
  cat "$tmp/out"
  for kind in HANG STUCK VIOLATION CRASH ZOMBIE; do
    n=$(grep -c "^$kind" "$tmp/err")
    ((n)) && { echo "$kind lines: $n (first 5)"; grep "^$kind" "$tmp/err" | head -5; }
  done
  ((rc == 0)) || fail=1
  if ! kill -0 "$server" 2>/dev/null; then echo "SERVER DEAD"; cat "$tmp/server.log"; exit 1; fi
  if timeout 30 "$tmp/fuzz-client" check "$mnt" "0-fuzz-after-$round"; then :; else echo "CHECK FAILED"; fail=1; fi
  if only_control; then echo "buses left: none"; else echo "BUSES LEFT: $(ls "$mnt" | tr '\n' ' ')"; fail=1; fi
  sleep 0.5
  read -r fd1 rss1 < <(usage)
  census1=$(census "$server" "$tmp/server.log")
  if [[ -n $census0 && $census1 == "$census0" ]]; then echo "census: back to the baseline"
  else echo "CENSUS NOT BACK: $census0 -> $census1"; fail=1; fi
  echo "server: fds $fd0 -> $fd1 (bound ±2), rss ${rss0}kB -> ${rss1}kB (+$(( (rss1 - rss0) / 1024 )) MiB, bound +64)"
  (( fd1 - fd0 > 2 || fd0 - fd1 > 2 )) && { echo "FD COUNT NOT BACK"; fail=1; }
  (( rss1 - rss0 > 65536 )) && { echo "RSS NOT BACK"; fail=1; }
  echo "zombie tasks traced by the server now: $(for p in /proc/[0-9]*; do awk '/^State:.*Z/ {z=1} /^TracerPid:/ {t=$2} END {if (z && t) print t}' $p/status 2>/dev/null; done | grep -c .)"
done
exit $fail
