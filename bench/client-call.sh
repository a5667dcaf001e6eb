#!/usr/bin/env bash
# A method call between two kdbusfs/client processes in Node against the
# same call between two programs linked against sd-bus of February 2015, on
# one kdbusfs mount in one run (issue 12's speed target: Node <= 1.3x sd-bus).
#
# Both sides: a server exporting Echo(ay) -> ay and a client calling it in a
# loop (bench/client-call.mjs, bench/sdbus2015-call.c), each receiving the
# metadata sd-bus asks for by default (NAMES). Rounds alternate sd-bus and
# Node so that both see the same machine load; each round prints REPS figures in
# microseconds per call; the summary gives the medians and their ratio.
# PROFILE=1 then runs the Node client and server once under --cpu-prof and
# prints where their time goes (bench/cpuprofile-top.mjs); STRACE=1 counts
# each side's system calls (strace -f -c). COUNT=1 counts, per call, the
# FUSE requests each process of each side makes (perf's fuse:fuse_request_send
# tracepoint, by opcode), its kdbus ioctls by command (RECVs that found the
# queue empty apart), its waits (epoll_wait, poll, ppoll) and its context
# switches (sleeps, and preemptions while runnable): a 2 s run of
# each side, pinned with the rest of the run if the script is (taskset).
# BASELINE=DIR adds a third side to every round (and to COUNT): the Node pair
# of another built checkout (DIR/bench/client-call.mjs with DIR/dist), for an
# A/B of a client change in one run.
# Needs root, gcc, a built checkout (npm ci) and ../shared/sd-bus-2015.
#   ROUNDS=3 REPS=3 SECONDS_PER_REP=2 SIZE=8 PROFILE=1 bench/client-call.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
REPS=${REPS:-3}
SECS=${SECONDS_PER_REP:-2}
SIZE=${SIZE:-8}
PROFILE=${PROFILE:-0}

if [[ ${KDBUSFS_BENCH_INSIDE:-} != 1 ]]; then
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/kdbusfs
  mkdir -p "$cache"
  bash ../shared/sd-bus-2015/build.sh "$cache/sd-bus-2015" >&2
  S=$cache/sd-bus-2015/src
  gcc -O2 -Wall -I bench -I "$S/src/systemd" -o "$cache/sdbus2015-call" bench/sdbus2015-call.c \
    "$S/.libs/libsystemd-internal.a" "$S/.libs/libsystemd-shared.a" -lcap -lm -lrt -pthread
  # a private mount namespace: the mount goes away with the run
  exec env KDBUSFS_BENCH_INSIDE=1 SDBUS_CALL="$cache/sdbus2015-call" unshare --mount --propagation private -- "$0" "$@"
fi

work=$(mktemp -d /tmp/kdbusfs-client-call.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  umount -l "$work/mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/mnt"
KDBUSFS_QUIET=1 node dist/lib/cli.js mount "$work/mnt" & pids+=($!)
for _ in $(seq 400); do [[ -e $work/mnt/control ]] && break; sleep 0.05; done
node --input-type=module -e "
  const { makeBus } = await import('$PWD/dist/lib/client/index.js');
  makeBus('0-bench', { root: '$work/mnt', access: 'world' });
  setInterval(() => undefined, 1 << 30);" & pids+=($!)
bus=$work/mnt/0-bench/bus
for _ in $(seq 400); do [[ -e $bus ]] && break; sleep 0.05; done
[[ -e $bus ]] || { echo "no bus at $bus" >&2; exit 1; }

echo "method call Echo(ay) of $SIZE bytes, us per call; $ROUNDS rounds x $REPS reps of ${SECS}s"
: >"$work/sdbus" >"$work/node" >"$work/base"
for round in $(seq "$ROUNDS"); do
  "$SDBUS_CALL" "kernel:path=$bus" "$SIZE" "$SECS" "$REPS" | tee -a "$work/sdbus" | sed "s/^/round $round sd-bus 2015: /"
  node bench/client-call.mjs "$bus" "$SIZE" "$SECS" "$REPS" | tee -a "$work/node" | sed "s/^/round $round kdbusfs\/client: /"
  if [[ -n ${BASELINE:-} ]]; then
    node "$BASELINE/bench/client-call.mjs" "$bus" "$SIZE" "$SECS" "$REPS" | tee -a "$work/base" | sed "s/^/round $round baseline client: /"
  fi
done
median() { sort -n "$1" | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
s=$(median "$work/sdbus")
n=$(median "$work/node")
echo "median sd-bus 2015:     $s us per call"
echo "median kdbusfs/client:  $n us per call"
awk -v n="$n" -v s="$s" 'BEGIN { printf "ratio Node / sd-bus:    %.2fx (target <= 1.3x)\n", n / s }'
if [[ -n ${BASELINE:-} ]]; then
  b=$(median "$work/base")
  echo "median baseline client: $b us per call ($BASELINE)"
  awk -v b="$b" -v s="$s" -v n="$n" 'BEGIN { printf "ratio baseline / sd-bus: %.2fx; this / baseline: %.2fx\n", b / s, n / b }'
fi

if [[ -n ${STRACE:-} ]]; then
  # system calls per call of each client (and its server, -f), for a 1 s run
  strace -f -c -o "$work/strace-sdbus" "$SDBUS_CALL" "kernel:path=$bus" "$SIZE" 1 1 >/dev/null
  strace -f -c -o "$work/strace-node" node bench/client-call.mjs "$bus" "$SIZE" 1 1 >/dev/null
  head -20 "$work/strace-sdbus" "$work/strace-node"
fi
if [[ ${COUNT:-0} == 1 ]]; then
  count() { # SIDE ADDRESS PROGRAM...: per-call counts of SIDE's client and server processes
    local side=$1 address=$2
    shift 2
    CALLS_FILE="$work/calls-$side" perf record -q -o "$work/perf-$side" \
      -e fuse:fuse_request_send -e syscalls:sys_enter_ioctl -e syscalls:sys_exit_ioctl \
      -e syscalls:sys_enter_epoll_wait -e syscalls:sys_enter_epoll_pwait -e syscalls:sys_enter_poll -e syscalls:sys_enter_ppoll -e sched:sched_switch \
      -- "$@" "$address" "$SIZE" 2 1 >/dev/null
    perf script -i "$work/perf-$side" -F pid,tid,event,trace 2>/dev/null | node bench/client-call-count.mjs "$side" "$work/calls-$side"
  }
  count sd-bus "kernel:path=$bus" "$SDBUS_CALL"
  count node "$bus" node bench/client-call.mjs
  if [[ -n ${BASELINE:-} ]]; then count baseline "$bus" node "$BASELINE/bench/client-call.mjs"; fi
fi
if [[ $PROFILE == 1 ]]; then
  KDBUSFS_BENCH_SERVER_PROF="$work/prof-server" node --cpu-prof --cpu-prof-dir="$work/prof" bench/client-call.mjs "$bus" "$SIZE" "$SECS" 1 >/dev/null
  echo "== the Node client"
  node bench/cpuprofile-top.mjs "$work"/prof/*.cpuprofile
  echo "== the Node server"
  node bench/cpuprofile-top.mjs "$work"/prof-server/*.cpuprofile
fi
