#!/usr/bin/env bash
# ioctl round-trip latency: the empty FUSE ioctl (bench/empty-ioctl-server.c,
# raw protocol in C) against kdbusfs, every process pinned to one CPU.
#
# The kdbusfs operation is the cheapest one that crosses the whole stack:
# KDBUS_CMD_BUS_MAKE on the control file with size = 8, below the minimum.
# The addon reads the command from the caller, the core validates it and
# answers EINVAL. A middle line runs the native addon alone with a JS handler
# answering EINVAL at once (bench/ioctl-roundtrip-addon.mjs). Then, on a
# connection: RECV on its empty queue (EAGAIN), poll(2) with nothing queued
# (a FUSE_POLL), FREE of a slice a NAME_LIST put into the pool; the last two
# with a command struct built anew each call (bench/ioctl-roundtrip.c). Set
# KDBUSFS_FASTPATH=0 to measure kdbusfs without its native fast path
# (native/fastpath.h).
#
# Each figure is the median of REPS client runs; each client run reports the
# median over batches of the mean time per ioctl. Needs root and gcc.
#   REPS=5 N=20000 CPU=0 bench/ioctl-roundtrip.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
N=${N:-20000}
CPU=${CPU:-0}

work=$(mktemp -d /tmp/kdbusfs-bench.XXXXXX)
server_pid=
cleanup() {
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null || true
  for d in "$work"/mnt-*; do
    [[ -d $d ]] && umount -l "$d" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

gcc -O2 -Wall -o "$work/ioctl-roundtrip" bench/ioctl-roundtrip.c
gcc -O2 -Wall -o "$work/empty-ioctl-server" bench/empty-ioctl-server.c

# start NAME CMD...: runs a server pinned to $CPU on $work/mnt-NAME, waits for
# its control file.
start() {
  local dir=$work/mnt-$1
  shift
  mkdir -p "$dir"
  taskset -c "$CPU" "$@" "$dir" >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 200); do
    [[ -e $dir/control ]] && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "server did not come up: $*" >&2
  cat "$work/server.log" >&2
  return 1
}

# stop SIGNAL: ends the server (a signal, or "umount" for the C server).
stop() {
  if [[ $1 == umount ]]; then
    umount -l "$work"/mnt-empty
  else
    kill "-$1" "$server_pid"
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

# measure NAME [recv|poll|free]: median over $REPS client runs, in microseconds.
measure() {
  local dir=$work/mnt-$1 target
  target=$dir/control
  [[ -n ${2:-} ]] && target=$dir
  for _ in $(seq "$REPS"); do
    taskset -c "$CPU" "$work/ioctl-roundtrip" "$target" "$N" 1000 ${2:-} | tee -a "$work/runs.log" | awk '{print $1}'
  done | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}

start empty "$work/empty-ioctl-server"
base=$(measure empty)
stop umount
printf '%-52s %8s us\n' "empty FUSE ioctl (C server, blocking read):" "$base"

start addon node bench/ioctl-roundtrip-addon.mjs
addon=$(measure addon)
stop TERM
printf '%-52s %8s us   %5.2fx\n' "native addon + JS handler (EINVAL at once):" "$addon" \
  "$(awk -v a="$addon" -v b="$base" 'BEGIN {print a / b}')"

if [[ ! -f dist/lib/cli.js ]]; then
  echo "kdbusfs: dist/lib/cli.js is missing (npm run build): not measured" >&2
  exit 0
fi
# Quiet: the core logs every failed ioctl as an info line otherwise.
KDBUSFS_QUIET=1 start kdbusfs node dist/lib/cli.js mount
kd=$(measure kdbusfs)
kdrecv=$(measure kdbusfs recv)
kdpoll=$(measure kdbusfs poll)
kdfree=$(measure kdbusfs free)
kdrecvfresh=$(measure kdbusfs recv-fresh)
kdfreefresh=$(measure kdbusfs free-fresh)
stop INT
line() {
  printf '%-52s %8s us   %5.2fx\n' "$1" "$2" "$(awk -v a="$2" -v b="$base" 'BEGIN {print a / b}')"
}
line "kdbusfs BUS_MAKE, size < minimum (EINVAL):" "$kd"
line "kdbusfs RECV on an empty queue (EAGAIN):" "$kdrecv"
line "kdbusfs POLL, nothing queued:" "$kdpoll"
line "kdbusfs FREE of a slice the client holds:" "$kdfree"
# kdbus writes kernel_flags back whatever the answer: into a struct built
# anew (sd-bus) that is a write into the caller's memory each time
line "kdbusfs RECV EAGAIN, struct built anew:" "$kdrecvfresh"
line "kdbusfs FREE, struct built anew:" "$kdfreefresh"
