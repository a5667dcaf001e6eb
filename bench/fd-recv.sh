#!/usr/bin/env bash
# The fd paths of kdbusfs (issue #16): us per RECV of a message with 1 fd and
# with a memfd (the fd installation into the receiver), and us per SEND of the
# upstream message-quota selftest's message (EXPECT_REPLY, 128 KiB of
# PAYLOAD_VEC, a 1 MiB sealed memfd). Needs root. Prints one markdown table.
#
#   bench/fd-recv.sh                 medians of REPS=5 reps of N=200 RECVs, or of
#                                    ROUNDS=2 rounds of 128 SENDs (8 fresh receivers)
#   PIN="" bench/fd-recv.sh          unpinned (default: every process on CPU 0)
#   KDBUSFS_FDINSTALL_TRACE=1 ...    the server logs stops and syscalls per install
#   CLI=/other/checkout/dist/lib/cli.js bench/fd-recv.sh   another build (A/B)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
N=${N:-200}
ROUNDS=${ROUNDS:-2}
if [[ -n ${QUICK:-} ]]; then N=20 ROUNDS=1 REPS=1; fi  # bench/run.sh --quick: a smoke run
PIN=${PIN-taskset -c 0}
CLI=${CLI:-dist/lib/cli.js}
[[ $(id -u) == 0 ]] || { echo "bench/fd-recv.sh: needs root (it mounts kdbusfs)" >&2; exit 1; }
[[ -f dist/lib/cli.js ]] || npm run build >&2

work=$(mktemp -d /tmp/kdbusfs-fdbench.XXXXXX)
kd_pid=
cleanup() {
  [[ -n $kd_pid ]] && kill -INT "$kd_pid" 2>/dev/null || true
  sleep 0.3
  mountpoint -q "$work/kdbus" 2>/dev/null && umount -l "$work/kdbus" || true
  rm -rf "$work"
}
trap cleanup EXIT

gcc -O2 -Wall -Iinclude -o "$work/fd-recv" bench/fd-recv.c
mkdir -p "$work/kdbus"
KDBUSFS_QUIET=1 $PIN node "$CLI" mount "$work/kdbus" >"$work/kdbusfs.log" 2>&1 &
kd_pid=$!
for _ in $(seq 200); do [[ -e $work/kdbus/control ]] && break; sleep 0.05; done
[[ -e $work/kdbus/control ]] || { echo "kdbusfs did not come up" >&2; cat "$work/kdbusfs.log" >&2; exit 1; }

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "$CLI; load: $(cut -d' ' -f1-3 /proc/loadavg), ${PIN:-unpinned}, $REPS reps of $N RECVs / $ROUNDS x 128 SENDs"
echo
echo "| figure | median us | min | max |"
echo "|---|---|---|---|"
for mode in recv-fd recv-memfd send-memfd; do
  n=$N; [[ $mode == send-memfd ]] && n=$ROUNDS
  vals=$($PIN "$work/fd-recv" "$work/kdbus" "$mode" "$n" "$REPS")
  echo "| $mode | $(median <<<"$vals") | $(sort -n <<<"$vals" | head -1) | $(sort -n <<<"$vals" | tail -1) |"
done
echo
echo "send-memfd: the message-quota selftest makes 128 such SENDs within 100 ms (< 781 us each, its own work included)"
[[ -n ${KDBUSFS_FDINSTALL_TRACE:-} ]] && grep 'fd install' "$work/kdbusfs.log" | tail -3 >&2 || true
