#!/usr/bin/env bash
# The synchronous method call (issue 16) in one run: kdbusfs builds side by
# side (A/B), dbus-broker, and 8 x the empty FUSE ioctl (a call is 8 FUSE
# requests), pinned as bench/run.sh pins: every server's threads and every
# client on CPU 0. kdbusfs is warmed up before it is pinned, as in run.sh
# (its memory task then exists already, and run.sh's taskset -a does not
# reach it: it is a process of its own).
#
# Rounds alternate the systems so that load weighs on all alike; each round
# runs every client once (REPS figures of SECS each); the summary gives the
# median of all figures per system and size, and the ratios. With CPU=1 it
# also prints the CPU time per call of each kdbusfs build (server threads and
# memory task, from /proc schedstat: exact, and less hurt by load than wall
# time) and its context switches per call.
#
#   KDBUSFS="/work/main ." SIZES="8 1048576" ROUNDS=5 REPS=1 SECS=1 bench/call-cost.sh
# Needs root, gcc, libsystemd-dev and dbus-broker (as bench/run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
KDBUSFS=${KDBUSFS:-.}
SIZES=${SIZES:-8 1048576}
ROUNDS=${ROUNDS:-5}
REPS=${REPS:-1}
SECS=${SECS:-1}
CPU=${CPU:-1}

if [[ ${CALL_COST_INSIDE:-} != 1 ]]; then
  exec env CALL_COST_INSIDE=1 unshare --mount --propagation private -- "$0" "$@"
fi

work=$(mktemp -d /tmp/kdbusfs-call-cost.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  sleep 0.5
  for d in "$work"/mnt-*; do umount -l "$d" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

gcc -O2 -Wall -Iinclude -o "$work/kdbus-bench" bench/kdbus-bench.c
gcc -O2 -Wall -o "$work/sdbus-bench" bench/sdbus-bench.c -lsystemd
gcc -O2 -Wall -o "$work/ioctl-roundtrip" bench/ioctl-roundtrip.c
gcc -O2 -Wall -o "$work/empty-ioctl-server" bench/empty-ioctl-server.c

wait_for() { # PATH PID WHAT
  for _ in $(seq 200); do
    [[ -e $1 ]] && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.05
  done
  echo "$3 did not come up" >&2
  exit 1
}

# the empty FUSE ioctl server, pinned from the start
mkdir -p "$work/mnt-empty"
taskset -c 0 "$work/empty-ioctl-server" "$work/mnt-empty" >/dev/null 2>&1 &
pids+=($!)
wait_for "$work/mnt-empty/control" "$!" empty-ioctl-server

# dbus-broker through its controller (bench/sdbus-bench.c), pinned
"$work/sdbus-bench" broker-controller "$work/broker.sock" --max-bytes 1000000000 \
  --max-fds 100000 --max-matches 1000000 --max-objects 10000000 >"$work/broker.pid" 2>"$work/broker.log" &
ctl=$!
pids+=($ctl)
for _ in $(seq 200); do [[ -s $work/broker.pid ]] && break; sleep 0.05; done
broker=$(cat "$work/broker.pid")
taskset -a -cp 0 "$broker" >/dev/null
taskset -a -cp 0 "$ctl" >/dev/null

# the kdbusfs builds: mounted, warmed up unpinned, then pinned
names=()
declare -A KDPID
i=0
for dir in $KDBUSFS; do
  name="$i:$(cd "$dir" && pwd | xargs basename)"
  mnt="$work/mnt-kd$i"
  mkdir -p "$mnt"
  KDBUSFS_QUIET=1 node "$dir/dist/lib/cli.js" mount "$mnt" >"$work/kd$i.log" 2>&1 &
  KDPID[$name]=$!
  pids+=($!)
  wait_for "$mnt/control" "$!" "kdbusfs $dir"
  "$work/kdbus-bench" "$mnt" call 8 0.2 1 >/dev/null
  taskset -a -cp 0 "${KDPID[$name]}" >/dev/null
  names+=("$name")
  i=$((i + 1))
done

# schedstat_ns PID: CPU ns of the server's threads and its memory tasks;
# switches PID: their context switches
tasks_of() {
  echo /proc/"$1"/task/*
  for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    [[ $(cat /proc/"$c"/comm 2>/dev/null) == kdbusfs-mem ]] && echo "/proc/$c"
  done
}
schedstat_ns() { for t in $(tasks_of "$1"); do cat "$t/schedstat" 2>/dev/null; done | awk '{s += $1} END {printf "%.0f\n", s}'; }
switches() {
  for t in $(tasks_of "$1"); do cat "$t/status" 2>/dev/null; done |
    awk '/_ctxt_switches/ {s += $2} END {printf "%.0f\n", s}'
}

declare -A FIG CPUS SW
for round in $(seq "$ROUNDS"); do
  FIG[empty]+="$(taskset -c 0 "$work/ioctl-roundtrip" "$work/mnt-empty/control" 20000 1000 | awk '{print $1 * 8}') "
  for size in $SIZES; do
    FIG[broker|$size]+="$(taskset -c 0 "$work/sdbus-bench" "unix:path=$work/broker.sock" call "$size" "$SECS" "$REPS" | tr '\n' ' ')"
    i=0
    for name in "${names[@]}"; do
      pid=${KDPID[$name]}
      c0=$(schedstat_ns "$pid") s0=$(switches "$pid")
      out=$(taskset -c 0 "$work/kdbus-bench" "$work/mnt-kd$i" call "$size" "$SECS" "$REPS" | tr '\n' ' ')
      c1=$(schedstat_ns "$pid") s1=$(switches "$pid")
      FIG[$name|$size]+="$out"
      # calls made: each figure is SECS of calls at that many us each, plus a warm-up of a third
      calls=$(echo "$out" | awk -v s="$SECS" '{for (i = 1; i <= NF; i++) {n += s * 1e6 / $i; m = $i}} END {print n + s / 3 * 1e6 / m}')
      CPUS[$name|$size]+="$(awk -v c=$((c1 - c0)) -v n="$calls" 'BEGIN {printf "%.1f ", c / 1000 / n}')"
      SW[$name|$size]+="$(awk -v c=$((s1 - s0)) -v n="$calls" 'BEGIN {printf "%.1f ", c / n}')"
      i=$((i + 1))
    done
  done
  echo "round $round done ($(cut -d' ' -f1-3 /proc/loadavg))" >&2
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
empty=$(echo "${FIG[empty]}" | median)
echo "pinned on CPU 0; medians of $ROUNDS rounds x $REPS figures of ${SECS}s; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-44s %10s us\n' "8 x empty FUSE ioctl" "$empty"
for size in $SIZES; do
  b=$(echo "${FIG[broker|$size]}" | median)
  printf '%-44s %10s us\n' "dbus-broker call $size B" "$b"
  for name in "${names[@]}"; do
    k=$(echo "${FIG[$name|$size]}" | median)
    line=$(printf '%-44s %10s us  %5.2fx broker  %5.2fx 8-empty' "kdbusfs [$name] call $size B" "$k" \
      "$(awk -v a="$k" -v b="$b" 'BEGIN {print a / b}')" "$(awk -v a="$k" -v b="$empty" 'BEGIN {print a / b}')")
    if [[ $CPU == 1 ]]; then
      line+=$(printf '  server cpu %s us/call, %s switches/call' "$(echo "${CPUS[$name|$size]}" | median)" \
        "$(echo "${SW[$name|$size]}" | median)")
    fi
    echo "$line"
  done
done
