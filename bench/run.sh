#!/usr/bin/env bash
# The benchmark suite: kdbusfs against dbus-broker, dbus-daemon and a unix
# socketpair floor. Needs root. Writes bench/results.md (markdown tables).
#
#   bench/run.sh                       the default run (~7 minutes)
#   REP_SECONDS=3 REPS=9 bench/run.sh  longer, steadier figures (~20 minutes)
#   bench/run.sh --quick               a smoke run of every part (QUICK=1 too):
#                                      REPS=1, short repetitions, figures
#                                      not worth reading
#
# Parameters (environment):
#   REPS=5          repetitions per figure (median, min and max are reported)
#   REP_SECONDS=1   length of one repetition of a latency/throughput figure
#                   (each client also runs one warm-up of a third of that)
#   IDLE_CONNS=1000 connections held for the idle-memory figure
#   BATCH=16        signal window: subscribers acknowledge every BATCH signals
#                   (kdbus lets one user queue at most 16 + 16 messages on a
#                   receiver, so a larger window loses broadcasts there)
#   MODES="pinned unpinned"   pinned = every process on CPU 0 (taskset -c 0)
#   IOCTL_N=20000   ioctls per client run of bench/ioctl-roundtrip.sh
#   SDBUS2015_LOOP=100ms  time per size and mode of sd-bus 2015's benchmark
#   SDBUS2015=~/.cache/kdbusfs/sd-bus-2015  where ../shared/sd-bus-2015/build.sh
#                   built sd-bus 2015 (its test-bus-kernel-benchmark is run)
#   OUT=bench/results.md
#
# Workloads (C clients, bench/*.c):
#   call 8 B / 4 KiB / 1 MiB: synchronous method call, payload both ways.
#     kdbus: SEND with KDBUS_SEND_SYNC_REPLY + EXPECT_REPLY, PAYLOAD_VEC; the
#     server RECVs and replies with cookie_reply; every slice is FREEd.
#     sd-bus: sd_bus_call with an "ay", echoed by the server.
#     floor: write SIZE bytes on a socketpair, read them back.
#   signal to 1 / 10 subscribers: broadcast deliveries per second (kdbus:
#     bloom filter + bloom-mask match; sd-bus: sd_bus_emit_signal +
#     sd_bus_match_signal), windowed by BATCH with acknowledgements.
#   connect: open + HELLO + mmap + close (sd-bus: start, Hello, close;
#     floor: unix stream connect + accept + close in one process).
#   server memory: resident size of the server with IDLE_CONNS idle
#     connections and its peak during a 10-subscriber broadcast. kdbusfs:
#     VmRSS minus the Rss of its /memfd:kdbusfs-pool mappings (the pools
#     belong to the clients' side of the comparison). Its fd-install tracer
#     shares the server's memory (clone with CLONE_VM); its small forked
#     watchdog process (kdbusfs-watch) is not counted.
#
# Against the targets of issue #16 (first table of results.md):
#   the trivial requests (refused command, RECV on an empty queue, POLL,
#     FREE...) against an empty FUSE ioctl of bench/empty-ioctl-server.c:
#     every "LABEL: VALUE us" line bench/ioctl-roundtrip.sh prints (pinned);
#   FUSE requests per 8 B call, per broadcast delivery and per connect,
#     counted with perf on the fuse:fuse_request_send tracepoint (filtered on
#     the suite's mount; tracefs is mounted on /sys/kernel/tracing if it is
#     not) over a run of the same client, and the FUSE floor they make with
#     the empty ioctl figure (no perf: those cells say "not counted");
#   RECV with fds / a memfd: the "LABEL: VALUE us" lines of bench/fd-recv.sh
#     when it exists;
#   sd-bus 2015's own test-bus-kernel-benchmark (copy vs memfd transactions
#     per size, and where they cross) against kdbusfs on /sys/fs/kdbus in a
#     private mount namespace, when ../shared/sd-bus-2015 is built.
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=${QUICK:-}
for a in "$@"; do
  case $a in
    --quick) QUICK=1 ;;
    *) echo "usage: bench/run.sh [--quick]" >&2; exit 2 ;;
  esac
done
if [[ -n $QUICK ]]; then
  : "${REPS:=1}" "${REP_SECONDS:=0.2}" "${IDLE_CONNS:=100}" "${IOCTL_N:=2000}" "${SDBUS2015_LOOP:=10ms}"
fi
REPS=${REPS:-5}
REP_SECONDS=${REP_SECONDS:-1}
IDLE_CONNS=${IDLE_CONNS:-1000}
IOCTL_N=${IOCTL_N:-20000}
SDBUS2015_LOOP=${SDBUS2015_LOOP:-100ms}
SDBUS2015=${SDBUS2015:-${XDG_CACHE_HOME:-$HOME/.cache}/kdbusfs/sd-bus-2015}
BATCH=${BATCH:-16}
MODES=${MODES:-pinned unpinned}
OUT=${OUT:-bench/results.md}

[[ $(id -u) == 0 ]] || { echo "bench/run.sh: needs root (it mounts kdbusfs)" >&2; exit 1; }

# --- what the run needs, from Debian's packages, only if missing
missing=()
for p in dbus-daemon dbus-broker libsystemd-dev gcc linux-perf; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
[[ -f dist/lib/cli.js ]] || npm run build >&2


ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d /tmp/kdbusfs-bench.XXXXXX)
kd_pid='' daemon_pid='' ctl_pid='' broker_pid=''
cleanup() {
  if [[ -n $kd_pid ]]; then kill -INT "$kd_pid" 2>/dev/null || true; fi
  for p in $daemon_pid $ctl_pid $broker_pid; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  if mountpoint -q "$work/kdbus" 2>/dev/null; then umount -l "$work/kdbus" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

gcc -O2 -Wall -Iinclude -o "$work/kdbus-bench" bench/kdbus-bench.c
gcc -O2 -Wall -o "$work/sdbus-bench" bench/sdbus-bench.c -lsystemd
gcc -O2 -Wall -o "$work/socketpair-bench" bench/socketpair-bench.c

wait_for() { # PATH PID WHAT
  for _ in $(seq 200); do
    [[ -e $1 ]] && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.05
  done
  echo "$3 did not come up" >&2
  cat "$work"/*.log >&2
  exit 1
}

# --- servers
mkdir -p "$work/kdbus"
KDBUSFS_QUIET=1 node dist/lib/cli.js mount "$work/kdbus" >"$work/kdbusfs.log" 2>&1 &
kd_pid=$!
wait_for "$work/kdbus/control" "$kd_pid" kdbusfs

cat >"$work/daemon.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path=$work/daemon.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>
  <limit name="max_message_size">134217728</limit>
  <limit name="max_completed_connections">100000</limit>
  <limit name="max_incomplete_connections">10000</limit>
  <limit name="max_connections_per_user">100000</limit>
  <limit name="max_match_rules_per_connection">100000</limit>
  <limit name="max_replies_per_connection">100000</limit>
</busconfig>
CONF
dbus-daemon --config-file="$work/daemon.conf" --nofork --nosyslog >"$work/daemon.log" 2>&1 &
daemon_pid=$!
wait_for "$work/daemon.sock" "$daemon_pid" dbus-daemon

# dbus-broker-launch needs systemd; the broker itself is driven through its
# controller socket by sdbus-bench (see run_controller in bench/sdbus-bench.c).
"$work/sdbus-bench" broker-controller "$work/broker.sock" --max-bytes 1000000000 \
  --max-fds 100000 --max-matches 1000000 --max-objects 10000000 >"$work/broker.pid" 2>"$work/broker.log" &
ctl_pid=$!
for _ in $(seq 200); do [[ -s $work/broker.pid ]] && break; sleep 0.05; done
broker_pid=$(cat "$work/broker.pid")
[[ -n $broker_pid ]] || { echo "dbus-broker did not come up" >&2; cat "$work/broker.log" >&2; exit 1; }

PFX=()  # taskset -c 0 when pinned
client() { # SYSTEM ARGS...: the bench client of SYSTEM (or the socketpair floor), under PFX
  local s=$1
  shift
  case $s in
    kdbusfs) "${PFX[@]}" "$work/kdbus-bench" "$work/kdbus" "$@" ;;
    dbus-daemon) "${PFX[@]}" "$work/sdbus-bench" "unix:path=$work/daemon.sock" "$@" ;;
    dbus-broker) "${PFX[@]}" "$work/sdbus-bench" "unix:path=$work/broker.sock" "$@" ;;
    socketpair) "${PFX[@]}" "$work/socketpair-bench" "$@" ;;
  esac
}
declare -A SPID=([kdbusfs]=$kd_pid [dbus-daemon]=$daemon_pid [dbus-broker]=$broker_pid)
SYSTEMS=(kdbusfs dbus-broker dbus-daemon)
declare -A R  # "mode|workload|system" -> "median min max"

stats() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) exit 1; print v[int((NR + 1) / 2)], v[1], v[NR]}'; }

# rss_kb SYSTEM: resident size of the server in KiB (kdbusfs: pools excluded)
rss_kb() {
  local pid=${SPID[$1]}
  if [[ $1 == kdbusfs ]]; then
    awk '/^[0-9a-f]+-[0-9a-f]+ / {pool = ($6 ~ /^\/memfd:kdbusfs-pool/)}
         /^Rss:/ {all += $2; if (pool) p += $2}
         END {print all - p}' "/proc/$pid/smaps"
  else
    awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"
  fi
}

measure() { # KEY CMD...: runs the client, records the median of its REPS figures
  local key=$1; shift
  local out
  if ! out=$("$@" 2>"$work/client.err" | stats); then
    echo "FAILED: $key: $(tail -3 "$work/client.err")" >&2
    out="failed"
  fi
  R[$key]=$out
  printf '%-40s %s\n' "$key" "$out" >&2
}

idle_rss() { # SYSTEM: RSS with IDLE_CONNS idle connections, REPS times
  local s=$1
  for _ in $(seq "$REPS"); do
    coproc IDLE { client "$s" idle "$IDLE_CONNS"; }
    local line='' in=${IDLE[1]}
    read -r line <&"${IDLE[0]}" || true
    [[ $line == ready ]] || { echo "idle clients failed for $s" >&2; exec {in}>&-; wait "$IDLE_PID" || true; continue; }
    sleep 0.5
    rss_kb "$s"
    exec {in}>&-
    wait "$IDLE_PID" || true
    sleep 0.5
  done
}

load_rss() { # SYSTEM: peak RSS during a 10-subscriber broadcast run, REPS times
  local s=$1
  for _ in $(seq "$REPS"); do
    client "$s" signal 10 "$REP_SECONDS" 1 "$BATCH" >/dev/null 2>>"$work/client.err" &
    local c=$! peak=0 v
    while kill -0 "$c" 2>/dev/null; do
      v=$(rss_kb "$s"); ((v > peak)) && peak=$v
      sleep 0.05
    done
    wait "$c" || true
    echo "$peak"
  done
}

start_rss() { # SYSTEM: RSS before the run's first client
  for _ in $(seq "$REPS"); do rss_kb "$1"; sleep 0.1; done
}

pin_servers() { # CPUS
  for p in $kd_pid $daemon_pid $broker_pid $ctl_pid; do taskset -a -cp "$1" "$p" >/dev/null; done
}

# FUSE requests to the suite's kdbusfs mount, counted by perf on the
# fuse:fuse_request_send tracepoint, filtered on the mount's connection (other
# FUSE mounts on the machine are not counted): the total, then per opcode.
OPNAMES=(IOCTL POLL OPEN FLUSH RELEASE LOOKUP GETATTR)
OPCODES=(39 40 14 25 18 1 3)
can_count() {
  command -v perf >/dev/null || return 1
  [[ -d /sys/kernel/tracing/events ]] || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
  [[ -d /sys/kernel/tracing/events/fuse/fuse_request_send ]]
}
count_requests() { # KEY ARGS...: one kdbus-bench run (under PFX); R[KEY] = "OPS TOTAL N_IOCTL N_POLL ..."
  local key=$1 dev ev=() i
  shift
  # the tracepoint's dev_t is the kernel's (major << 20 | minor)
  dev=$(stat -c '%Hd %Ld' "$work/kdbus" | awk '{print $1 * 1048576 + $2}')
  ev=(-e fuse:fuse_request_send --filter "connection == $dev")
  for i in "${!OPCODES[@]}"; do
    ev+=(-e fuse:fuse_request_send --filter "connection == $dev && opcode == ${OPCODES[i]}")
  done
  if BENCH_OPS=1 perf stat -x, -o "$work/perf.out" -a "${ev[@]}" -- \
      "${PFX[@]}" "$work/kdbus-bench" "$work/kdbus" "$@" >/dev/null 2>"$work/count.err"; then
    R[$key]="$(awk '$1 == "ops" {print $2}' "$work/count.err") $(awk -F, '/fuse:fuse_request_send/ {printf "%s ", $1}' "$work/perf.out")"
  else
    echo "counting FUSE requests failed: $key: $(tail -3 "$work/count.err")" >&2
    R[$key]=failed
  fi
  printf '%-40s %s\n' "$key" "${R[$key]}" >&2
}

# us_lines FILE: the "LABEL: VALUE us [RATIOx]" lines of a bench script, and
# the rows of its markdown tables whose first figure is a number
# ("| LABEL | VALUE | ..." in microseconds), as LABEL|VALUE
us_lines() {
  sed -nE -e 's/^(.*[^[:space:]]):[[:space:]]+([0-9]+(\.[0-9]+)?)[[:space:]]+us([[:space:]].*)?$/\1|\2/p' \
    -e 's/^\|[[:space:]]*([^|]*[^|[:space:]])[[:space:]]*\|[[:space:]]*([0-9]+(\.[0-9]+)?)([[:space:]]*us)?[[:space:]]*\|.*$/\1|\2/p' "$1"
}

start=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for s in "${SYSTEMS[@]}"; do
  measure "start|rss|$s" start_rss "$s"
done
# idle memory first, on servers no workload has grown yet; again after each mode's run
PFX=()
for s in "${SYSTEMS[@]}"; do
  measure "fresh|rss idle|$s" idle_rss "$s"
done
for mode in $MODES; do
  if [[ $mode == pinned ]]; then
    pin_servers 0; PFX=(taskset -c 0)
  else
    pin_servers "0-$(($(nproc) - 1))"; PFX=()
  fi
  for size in 8 4096 1048576; do
    measure "$mode|call $size|socketpair" client socketpair call "$size" "$REP_SECONDS" "$REPS"
    for s in "${SYSTEMS[@]}"; do
      measure "$mode|call $size|$s" client "$s" call "$size" "$REP_SECONDS" "$REPS"
    done
  done
  for n in 1 10; do
    for s in "${SYSTEMS[@]}"; do
      measure "$mode|signal $n|$s" client "$s" signal "$n" "$REP_SECONDS" "$REPS" "$BATCH"
    done
  done
  measure "$mode|connect|socketpair" client socketpair connect "$REP_SECONDS" "$REPS"
  for s in "${SYSTEMS[@]}"; do
    measure "$mode|connect|$s" client "$s" connect "$REP_SECONDS" "$REPS"
  done
  if can_count; then
    count_requests "count|$mode|call 8" call 8 "$REP_SECONDS" 1
    count_requests "count|$mode|signal 10" signal 10 "$REP_SECONDS" 1 "$BATCH"
    count_requests "count|$mode|connect" connect "$REP_SECONDS" 1
  fi
  for s in "${SYSTEMS[@]}"; do
    measure "$mode|rss idle|$s" idle_rss "$s"
    measure "$mode|rss load|$s" load_rss "$s"
  done
done

# --- one request against an empty FUSE ioctl (its own mounts, pinned to CPU 0)
echo "bench/ioctl-roundtrip.sh (REPS=$REPS N=$IOCTL_N)" >&2
REPS=$REPS N=$IOCTL_N CPU=0 bash bench/ioctl-roundtrip.sh >"$work/ioctl.out" 2>"$work/ioctl.err" \
  || echo "bench/ioctl-roundtrip.sh failed: $(tail -3 "$work/ioctl.err")" >&2
cat "$work/ioctl.out" >&2
mapfile -t IOCTL_ROWS < <(us_lines "$work/ioctl.out")
BASE=''
for row in "${IOCTL_ROWS[@]}"; do
  if [[ ${row%|*} == *"empty FUSE ioctl"* ]]; then BASE=${row##*|}; fi
done

# --- RECV with fds / a memfd (bench/fd-recv.sh, when it exists)
FD_ROWS=()
FD_STATE="not measured: bench/fd-recv.sh does not exist yet"
if [[ -f bench/fd-recv.sh ]]; then
  echo "bench/fd-recv.sh (REPS=$REPS)" >&2
  if REPS=$REPS QUICK=$QUICK bash bench/fd-recv.sh >"$work/fd.out" 2>"$work/fd.err"; then
    FD_STATE="bench/fd-recv.sh printed no \"LABEL: VALUE us\" line or table row"
  else
    FD_STATE="bench/fd-recv.sh failed: $(tail -1 "$work/fd.err")"
  fi
  cat "$work/fd.out" >&2
  mapfile -t FD_ROWS < <(us_lines "$work/fd.out")
fi

# --- sd-bus 2015's own benchmark against kdbusfs on /sys/fs/kdbus, in a
# private mount namespace (sd-bus makes its buses through /sys/fs/kdbus/control)
SDBUS2015_BIN=$SDBUS2015/src/test-bus-kernel-benchmark
SDBUS2015_STATE=ok
# Its chart's last size, 2 MiB, cannot be sent by copy (the body and its
# header exceed KDBUS_MSG_MAX_PAYLOAD_VEC_SIZE, 2 MiB, on kdbus as here): the
# client child asserts and the server parent would wait for it forever, so
# the parent is ended once its child is gone. stdbuf: the child's rows reach
# the file line by line (abort() flushes nothing).
sdbus2015_one() { # OUT BIN ARGS...
  local out=$1 b c
  shift
  stdbuf -oL "$@" >"$out" 2>"$out.err" &
  b=$!
  while kill -0 "$b" 2>/dev/null; do
    c=$(cat "/proc/$b/task/$b/children" 2>/dev/null || true)
    if [[ -n $c ]] && [[ ! -e /proc/${c// /} || $(awk '{print $3}' "/proc/${c// /}/stat" 2>/dev/null) == Z ]]; then
      sleep 2  # a child that ended normally: its parent prints the result and reaps it
      kill "$b" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  wait "$b" 2>/dev/null || true
}
sdbus2015_inside() { # BIN OUT LOOP: runs in the namespace
  KDBUSFS_QUIET=1 node dist/lib/cli.js mount >"$2/sdbus2015-kdbusfs.log" 2>&1 &
  local srv=$! rc=0
  for _ in $(seq 400); do [[ -e /sys/fs/kdbus/control ]] && break; sleep 0.05; done
  if [[ -e /sys/fs/kdbus/control ]]; then
    sdbus2015_one "$2/sdbus2015-chart.out" "$1" chart "$3"
    sdbus2015_one "$2/sdbus2015-bisect.out" "$1" "$3"
  else
    echo "kdbusfs did not come up on /sys/fs/kdbus: $(tail -3 "$2/sdbus2015-kdbusfs.log")" >&2
    rc=1
  fi
  kill -INT "$srv"
  wait "$srv" || true
  return "$rc"
}
if [[ ! -f ../shared/sd-bus-2015/build.sh ]]; then
  SDBUS2015_STATE="not run: ../shared/sd-bus-2015 is missing"
elif [[ ! -x $SDBUS2015_BIN ]]; then
  SDBUS2015_STATE="not run: sd-bus 2015 is not built (bash ../shared/sd-bus-2015/build.sh $SDBUS2015)"
else
  echo "sd-bus 2015 test-bus-kernel-benchmark (loop $SDBUS2015_LOOP)" >&2
  unshare --mount --propagation private -- bash -c "$(declare -f sdbus2015_one sdbus2015_inside); sdbus2015_inside \"\$@\"" \
    bash "$SDBUS2015_BIN" "$work" "$SDBUS2015_LOOP" 2>"$work/sdbus2015.err" \
    || SDBUS2015_STATE="failed: $(tail -2 "$work/sdbus2015.err" | tr '\n' ' ')"
  cat "$work"/sdbus2015-*.out >&2 2>/dev/null || true
fi
elapsed=$(($(date +%s) - start))

# --- results.md
fmt() { # VALUE -> a readable number
  awk -v v="$1" 'BEGIN {
    if (v >= 100000) printf "%.0fk", v / 1000; else if (v >= 1000) printf "%.1fk", v / 1000;
    else if (v >= 100) printf "%.0f", v; else printf "%.1f", v }'
}
cell() { # KEY UNIT
  local v=${R[$1]:-}
  [[ -z $v ]] && { echo "—"; return; }
  [[ $v == failed ]] && { echo "failed"; return; }
  local med lo hi
  read -r med lo hi <<<"$v"
  echo "$(fmt "$med") $2 ($(fmt "$lo")–$(fmt "$hi"))"
}
ratio() { # KEY_A KEY_B INVERT: cost ratio of A to B (>1: A is slower or bigger)
  local a=${R[$1]:-} b=${R[$2]:-}
  [[ -z $a || -z $b || $a == failed || $b == failed ]] && { echo "—"; return; }
  awk -v a="${a%% *}" -v b="${b%% *}" -v inv="$3" 'BEGIN {
    r = inv ? b / a : a / b; printf "%.2fx", r }'
}

med() { # KEY: the median of a figure, empty when missing or failed
  local v=${R[$1]:-}
  [[ $v == failed ]] || echo "${v%% *}"
}
div() { # A B [SCALE]: A / B * SCALE, empty when either is missing
  awk -v a="$1" -v b="$2" -v s="${3:-1}" 'BEGIN { if (a == "" || b == "" || b == 0) exit; print a / b * s }'
}
x() { # RATIO: "1.23x", "—" when missing
  if [[ -n $1 ]]; then awk -v r="$1" 'BEGIN { printf "%.2fx", r }'; else echo "—"; fi
}
verdict() { # VALUE le|ge LIMIT: met / missed, "—" without a value
  [[ -n $1 ]] || { echo "—"; return; }
  awk -v r="$1" -v op="$2" -v l="$3" 'BEGIN { ok = op == "le" ? r <= l : r >= l; print ok ? "met" : "**missed**" }'
}
per_op() { # KEY: FUSE requests per operation of a count_requests run, empty when not counted
  local v=${R[$1]:-}
  [[ -n $v && $v != failed ]] || return 0
  awk -v v="$v" 'BEGIN { split(v, f, " "); if (f[1] > 0 && f[2] ~ /^[0-9]+$/) printf "%.2f", f[2] / f[1] }'
}
requests() { # KEY: "8.00 (IOCTL 6.00, POLL 2.00)", or why there is no count
  local v=${R[$1]:-}
  if [[ -z $v ]]; then echo "not counted (needs perf and the fuse tracepoints)"; return; fi
  [[ $v == failed ]] && { echo "count failed"; return; }
  awk -v v="$v" -v names="${OPNAMES[*]}" 'BEGIN {
    split(v, f, " "); n = split(names, nm, " "); ops = f[1]
    if (!(ops > 0) || f[2] !~ /^[0-9]+$/) { print "count failed"; exit }
    out = sprintf("%.2f (", f[2] / ops); rest = f[2]; sep = ""
    for (i = 1; i <= n; i++) {
      rest -= f[i + 2]
      if (f[i + 2] / ops >= 0.05) { out = out sep sprintf("%s %.2f", nm[i], f[i + 2] / ops); sep = ", " }
    }
    if (rest / ops >= 0.05) out = out sep sprintf("other %.2f", rest / ops)
    print out ")" }'
}
trow() { # FIGURE KDBUSFS REQUESTS REFERENCE RATIO TARGET VERDICT: one table row
  local out="|" c
  for c in "$@"; do out+=" $c |"; done
  echo "$out"
}
us() { # VALUE: "6.1 us", "—" when missing
  if [[ -n $1 ]]; then echo "$(fmt "$1") us"; else echo "—"; fi
}

wakeups() { # EXTRA_US WAKE_US: what the unpinned run added, in cross-CPU wakeups
  awk -v a="$1" -v w="$2" 'BEGIN {
    if (a > 0) printf "%.1f us more than pinned, %.1f such wakeups", a, a / w
    else printf "no more than pinned (%.1f us): the run'"'"'s load, not wakeups, set these figures", a }'
}

issue16() { # the first table of results.md
  local k v r row label floor q fl name pat found
  echo "## Issue #16: each figure against its target"
  echo
  echo "Pinned (every process on CPU 0) unless the row says otherwise; medians."
  echo "Empty FUSE ioctl of \`bench/empty-ioctl-server.c\` in this run: **$(us "$BASE")**"
  echo "(\`bench/ioctl-roundtrip.sh\`: median of $REPS client runs, each the median"
  echo "over batches of 1000 of $IOCTL_N ioctls). FUSE requests per operation are"
  echo "counted by perf on the \`fuse:fuse_request_send\` tracepoint, on the suite's"
  echo "mount only, over one run of the same client (pinned, or unpinned for the"
  echo "unpinned rows), warm-up and setup included. Load average at the start and"
  echo "the end of the run: $LOAD_START; $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "| figure | kdbusfs | FUSE requests per op (counted) | reference | ratio | target | |"
  echo "|---|---|---|---|---|---|---|"
  for row in "${IOCTL_ROWS[@]}"; do
    label=${row%|*} v=${row##*|}
    [[ $label == *"empty FUSE ioctl"* ]] && continue
    r=$(div "$v" "$BASE")
    if [[ $label == kdbusfs* ]]; then
      trow "${label#kdbusfs }" "$(us "$v")" "1" "empty FUSE ioctl $(us "$BASE")" "$(x "$r")" "≤ 1.15x" "$(verdict "$r" le 1.15)"
    else
      trow "$label" "$(us "$v")" "1" "empty FUSE ioctl $(us "$BASE")" "$(x "$r")" "(what the addon alone costs)" ""
    fi
  done
  for want in "refused command:BUS_MAKE|[Rr]efused" "RECV on an empty queue (EAGAIN):RECV" "POLL:POLL" "FREE:FREE"; do
    name=${want%%:*} pat=${want#*:} found=''
    for row in "${IOCTL_ROWS[@]}"; do
      [[ ${row%|*} == kdbusfs* ]] && grep -qE "$pat" <<<"${row%|*}" && found=1
    done
    [[ -n $found ]] || trow "$name" "not measured: no line for it in bench/ioctl-roundtrip.sh's output" "1" "empty FUSE ioctl" "—" "≤ 1.15x" "—"
  done

  k="pinned|call 8" q=$(per_op "count|pinned|call 8")
  floor=$(div "$BASE" 1 8) r=$(div "$(med "$k|kdbusfs")" "$floor")
  trow "method call, 8 B" "$(us "$(med "$k|kdbusfs")")" "$(requests "count|pinned|call 8")" \
    "8 x empty FUSE ioctl = $(us "$floor") (the counted requests x empty FUSE ioctl: $(us "$(div "$q" 1 "$BASE")"))" "$(x "$r") (dbus-broker: $(ratio "$k|kdbusfs" "$k|dbus-broker" 0))" "≤ 1.15x" "$(verdict "$r" le 1.15)"

  k="pinned|signal 10|kdbusfs" q=$(per_op "count|pinned|signal 10")
  fl=$(div 1000000 "$(div "$q" 1 "$BASE")") r=$(div "$(med "$k")" "$fl")
  trow "broadcast to 10 subscribers (deliveries/s)" "$(fmt "$(med "$k")")/s" "$(requests "count|pinned|signal 10") per delivery" \
    "FUSE floor: 1 / (${q:-?} requests x $(us "$BASE")) = $( [[ -n $fl ]] && fmt "$fl" || echo "?")/s" "$(x "$r")" "≥ 0.9x" "$(verdict "$r" ge 0.9)"

  k="pinned|connect"
  r=$(div "$(med "$k|kdbusfs")" "$(med "$k|dbus-broker")")
  trow "connect + HELLO + mmap + close" "$(us "$(med "$k|kdbusfs")")" "$(requests "count|pinned|connect")" \
    "dbus-broker $(us "$(med "$k|dbus-broker")")" "$(x "$r")" "≤ 2x" "$(verdict "$r" le 2)"

  if ((${#FD_ROWS[@]})); then
    for row in "${FD_ROWS[@]}"; do
      label=${row%|*} v=${row##*|}
      if grep -qi recv <<<"$label"; then
        trow "$label (bench/fd-recv.sh)" "$(us "$v")" "" "" "" "≤ 60 us" "$(verdict "$v" le 60)"
      else
        trow "$label (bench/fd-recv.sh)" "$(us "$v")" "" "" "" "(reported)" ""
      fi
    done
  else
    trow "RECV of a message with fds / a memfd" "$FD_STATE" "" "" "" "≤ 60 us" "—"
  fi

  local kd br
  kd=$( [[ -n $(med "fresh|rss idle|kdbusfs") && -n $(med "start|rss|kdbusfs") ]] &&
    awk -v a="$(med "fresh|rss idle|kdbusfs")" -v b="$(med "start|rss|kdbusfs")" -v n="$IDLE_CONNS" 'BEGIN {print (a - b) / n}')
  br=$( [[ -n $(med "fresh|rss idle|dbus-broker") && -n $(med "start|rss|dbus-broker") ]] &&
    awk -v a="$(med "fresh|rss idle|dbus-broker")" -v b="$(med "start|rss|dbus-broker")" -v n="$IDLE_CONNS" 'BEGIN {print (a - b) / n}')
  trow "server memory per idle connection ($IDLE_CONNS, fresh server)" \
    "$( [[ -n $kd ]] && fmt "$kd" || echo "—") KiB above its idle $(fmt "$(med "start|rss|kdbusfs")") KiB" "" \
    "dbus-broker $( [[ -n $br ]] && fmt "$br" || echo "—") KiB" "$(x "$(div "$kd" "$br")")" "≤ 10 KiB" "$(verdict "$kd" le 10)"

  k="pinned|call 1048576"
  r=$(div "$(med "$k|kdbusfs")" "$(med "$k|dbus-broker")")
  trow "method call, 1 MiB" "$(us "$(med "$k|kdbusfs")")" "" "dbus-broker $(us "$(med "$k|dbus-broker")")" "$(x "$r")" "≤ 0.40x" "$(verdict "$r" le 0.4)"

  for w in "call 8:method call, 8 B:us" "signal 10:broadcast to 10 (deliveries/s):/s" "connect:connect + HELLO + mmap + close:us"; do
    k=${w%%:*} label=${w#*:} label=${label%:*}
    local unit=${w##*:} kp ku
    kp=$(med "pinned|$k|kdbusfs") ku=$(med "unpinned|$k|kdbusfs")
    [[ -n $ku ]] || continue
    if [[ $unit == /s ]]; then
      trow "unpinned: $label" "$(fmt "$ku")/s (pinned $(fmt "$kp")/s)" "$(requests "count|unpinned|$k") per delivery" "dbus-broker unpinned $(fmt "$(med "unpinned|$k|dbus-broker")")/s" \
        "$(ratio "unpinned|$k|kdbusfs" "unpinned|$k|dbus-broker" 1) (pinned $(ratio "pinned|$k|kdbusfs" "pinned|$k|dbus-broker" 1))" "reported" ""
    else
      trow "unpinned: $label" "$(us "$ku") (pinned $(us "$kp"))" "$(requests "count|unpinned|$k")" "dbus-broker unpinned $(us "$(med "unpinned|$k|dbus-broker")")" \
        "$(ratio "unpinned|$k|kdbusfs" "unpinned|$k|dbus-broker" 0) (pinned $(ratio "pinned|$k|kdbusfs" "pinned|$k|dbus-broker" 0))" "reported" ""
    fi
  done
  echo
  echo "Ratios of the broadcast row are throughput over the floor (≥ 1 would be at"
  echo "the floor); all others are costs (≤ 1 is better). The broadcast's requests"
  echo "are every request on the mount during the run (the emitter's SEND and its"
  echo "acknowledgements included) over the deliveries."

  # the cross-CPU wakeup: the socketpair's 8 B round trip has two of them
  local sp su wake kx bx
  sp=$(med "pinned|call 8|socketpair") su=$(med "unpinned|call 8|socketpair")
  if [[ -n $sp && -n $su ]] && awk -v a="$su" -v b="$sp" 'BEGIN {exit !(a <= b)}'; then
    echo
    echo "**Cross-CPU wakeup.** Not measurable in this run: the socketpair's 8 B round"
    echo "trip took $(us "$su") unpinned against $(us "$sp") pinned (a loaded machine)."
  elif [[ -n $sp && -n $su ]]; then
    wake=$(awk -v a="$su" -v b="$sp" 'BEGIN {print (a - b) / 2}')
    kx=$(awk -v a="$(med "unpinned|call 8|kdbusfs")" -v b="$(med "pinned|call 8|kdbusfs")" 'BEGIN {print a - b}')
    bx=$(awk -v a="$(med "unpinned|call 8|dbus-broker")" -v b="$(med "pinned|call 8|dbus-broker")" 'BEGIN {print a - b}')
    q=$(per_op "count|unpinned|call 8")
    echo
    echo "**Cross-CPU wakeup.** The socketpair's 8 B round trip takes $(us "$su") unpinned"
    echo "against $(us "$sp") pinned: $(us "$wake") for each of its 2 wakeups of a task on"
    echo "the other vCPU. Unpinned, every FUSE request whose caller and server sit on"
    echo "different vCPUs pays it twice (the server's thread woken, then the caller),"
    echo "so kdbusfs's request count multiplies it. Its 8 B call (${q:-?} FUSE requests"
    echo "counted unpinned, $(per_op "count|pinned|call 8") pinned) takes $(us "$(med "unpinned|call 8|kdbusfs")") unpinned: $(wakeups "$kx" "$wake");"
    echo "dbus-broker's call (client, broker, server, broker, client: 4 hand-offs)"
    echo "takes $(us "$(med "unpinned|call 8|dbus-broker")"): $(wakeups "$bx" "$wake")."
  fi
}

sdbus2015() { # sd-bus 2015's own benchmark: its chart and its crossover
  echo "## sd-bus 2015's test-bus-kernel-benchmark against kdbusfs"
  echo
  if [[ $SDBUS2015_STATE != ok ]]; then
    echo "$SDBUS2015_STATE."
    return
  fi
  echo "\`test-bus-kernel-benchmark chart $SDBUS2015_LOOP\` (systemd a97dcc12e, ../shared/sd-bus-2015)"
  echo "in a private mount namespace with kdbusfs on /sys/fs/kdbus (the kdbusfs server"
  echo "unpinned; the benchmark pins its client to CPU 0 and its server to CPU 1):"
  echo "synchronous calls with an \`ay\` of SIZE bytes, transactions per second, the"
  echo "body copied into the message (COPY) or sealed in a memfd (MEMFD)."
  echo
  echo "| size (bytes) | copy (transactions/s) | memfd (transactions/s) | memfd ÷ copy |"
  echo "|---|---|---|---|"
  awk -F'\t' '$1 ~ /^[0-9]+$/ && NF == 3 {
    printf "| %s | %s | %s | %s |\n", $1, $2, $3, ($2 > 0 ? sprintf("%.2fx", $3 / $2) : "—") }' "$work/sdbus2015-chart.out"
  echo
  awk -F'\t' '$1 ~ /^[0-9]+$/ && NF == 3 { n++; if ($3 <= $2) x = ""; else if (x == "") x = $1; last = $1 }
    END { if (!n) print "The chart has no rows (see the run'"'"'s output).";
          else if (x != "") printf "Crossover in the chart: memfd is faster from %s bytes up (at every size from there).\n", x;
          else printf "Crossover in the chart: none; copying is faster at every size up to %s bytes.\n", last }' \
    "$work/sdbus2015-chart.out"
  local bisect
  bisect=$(grep -h "equally fast" "$work/sdbus2015-bisect.out" 2>/dev/null || true)
  echo "Its bisect mode (\`test-bus-kernel-benchmark $SDBUS2015_LOOP\`): ${bisect:-no result}."
  local last fail
  last=$(awk -F'\t' '$1 ~ /^[0-9]+$/ && NF == 3 {s = $1} END {print s}' "$work/sdbus2015-chart.out")
  fail=$(grep -m1 Assertion "$work/sdbus2015-chart.out.err" 2>/dev/null || true)
  if [[ -n $fail && $last == 1048576 ]]; then
    echo
    echo "The chart stops before its last size, 2 MiB: sent by copy, that body and its"
    echo "header exceed KDBUS_MSG_MAX_PAYLOAD_VEC_SIZE (2 MiB), which kdbus refuses with"
    echo "EMSGSIZE as kdbusfs does, and the benchmark's client asserts (\`$fail\`)."
  elif [[ -n $fail ]]; then
    echo
    echo "**The chart stopped after ${last:-no} bytes**: \`$fail\`."
  fi
}

{
  echo "# kdbusfs benchmark suite: results"
  echo
  echo "Generated by \`bench/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') in ${elapsed}s:"
  echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), kernel $(uname -r),"
  echo "node $(node --version), dbus-daemon $(dbus-daemon --version | head -1 | awk '{print $NF}'),"
  echo "dbus-broker $(dbus-broker --version | head -1 | awk '{print $NF}'), libsystemd $(dpkg-query -W -f='${Version}' libsystemd-dev)."
  echo "REPS=$REPS REP_SECONDS=$REP_SECONDS IDLE_CONNS=$IDLE_CONNS BATCH=$BATCH."
  echo
  echo "Each cell: median of $REPS repetitions (min–max). Latencies are per"
  echo "operation; signal figures are deliveries per second (signals x subscribers);"
  echo "memory is the server's resident size (kdbusfs: without its pool memfds)."
  echo "Ratios compare medians as costs: >1 means kdbusfs (or dbus-daemon) is slower"
  echo "or bigger (for throughput the ratio is inverted: other / kdbusfs)."
  [[ -n $QUICK ]] && { echo; echo "**A --quick smoke run: one short repetition per figure, not worth reading.**"; }
  echo
  issue16
  for mode in $MODES; do
    echo
    if [[ $mode == pinned ]]; then
      echo "## Pinned: every process on CPU 0 (\`taskset -c 0\`)"
    else
      echo "## Unpinned: every process free to run on any of the $(nproc) CPUs"
    fi
    echo
    echo "| workload | socketpair floor | dbus-broker | dbus-daemon | kdbusfs | kdbusfs ÷ floor | kdbusfs ÷ dbus-broker | dbus-daemon ÷ dbus-broker |"
    echo "|---|---|---|---|---|---|---|---|"
    row() { # LABEL WORKLOAD UNIT INVERT
      local k="$mode|$2|"
      echo "| $1 | $(cell "${k}socketpair" "$3") | $(cell "${k}dbus-broker" "$3") | $(cell "${k}dbus-daemon" "$3") | $(cell "${k}kdbusfs" "$3") | $(ratio "${k}kdbusfs" "${k}socketpair" "$4") | **$(ratio "${k}kdbusfs" "${k}dbus-broker" "$4")** | $(ratio "${k}dbus-daemon" "${k}dbus-broker" "$4") |"
    }
    row "method call, 8 B" "call 8" us 0
    row "method call, 4 KiB" "call 4096" us 0
    row "method call, 1 MiB" "call 1048576" us 0
    row "signal to 1 subscriber" "signal 1" /s 1
    row "signal to 10 subscribers" "signal 10" /s 1
    row "connect + HELLO + close" "connect" us 0
    row "server RSS, $IDLE_CONNS idle connections, after the workloads above" "rss idle" KiB 0
    row "server RSS, peak under broadcast to 10" "rss load" KiB 0
  done
  echo
  echo "## Server memory before any workload"
  echo
  echo "| figure | dbus-broker | dbus-daemon | kdbusfs | kdbusfs ÷ dbus-broker | dbus-daemon ÷ dbus-broker |"
  echo "|---|---|---|---|---|---|"
  for f in "start|rss|start, no client" "fresh|rss idle|$IDLE_CONNS idle connections"; do
    k=${f%|*}; label=${f##*|}
    echo "| server RSS, $label | $(cell "$k|dbus-broker" KiB) | $(cell "$k|dbus-daemon" KiB) | $(cell "$k|kdbusfs" KiB) | **$(ratio "$k|kdbusfs" "$k|dbus-broker" 0)** | $(ratio "$k|dbus-daemon" "$k|dbus-broker" 0) |"
  done
  echo
  echo "The idle figure is taken first, on servers no workload has grown yet, and"
  echo "again after each mode's workloads (rows above): kdbusfs (Node's heap) and"
  echo "dbus-daemon keep their high-water mark after the clients leave, so those"
  echo "later rows include what earlier workloads used; dbus-broker gives memory"
  echo "back, so its figures can drop."
  echo
  echo "The socketpair floor has no broker: its \"connect\" is a unix stream"
  echo "connect + accept + close in one process, and it has no broadcast or server."
  echo
  sdbus2015
} >"$OUT"
cat "$OUT"
