#!/usr/bin/env bash
# The benchmark suite: kdbusfs against dbus-broker, dbus-daemon and a unix
# socketpair floor. Needs root. Writes bench/results.md (markdown tables).
#
#   bench/run.sh                       the default run (~5 minutes)
#   REP_SECONDS=3 REPS=9 bench/run.sh  longer, steadier figures (~15 minutes)
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
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
REP_SECONDS=${REP_SECONDS:-1}
IDLE_CONNS=${IDLE_CONNS:-1000}
BATCH=${BATCH:-16}
MODES=${MODES:-pinned unpinned}
OUT=${OUT:-bench/results.md}

[[ $(id -u) == 0 ]] || { echo "bench/run.sh: needs root (it mounts kdbusfs)" >&2; exit 1; }

# --- what the run needs, from Debian's packages, only if missing
missing=()
for p in dbus-daemon dbus-broker libsystemd-dev gcc; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
[[ -f dist/lib/cli.js ]] || npm run build >&2


ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d /tmp/kdbusfs-bench.XXXXXX)
kd_pid= daemon_pid= ctl_pid= broker_pid=
cleanup() {
  [[ -n $kd_pid ]] && kill -INT "$kd_pid" 2>/dev/null || true
  for p in $daemon_pid $ctl_pid $broker_pid; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  mountpoint -q "$work/kdbus" 2>/dev/null && umount -l "$work/kdbus" || true
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

KD="$work/kdbus-bench $work/kdbus"
DD="$work/sdbus-bench unix:path=$work/daemon.sock"
DB="$work/sdbus-bench unix:path=$work/broker.sock"
FL="$work/socketpair-bench"
declare -A ADDR=([kdbusfs]="$KD" [dbus-daemon]="$DD" [dbus-broker]="$DB")
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
    coproc IDLE { $pfx ${ADDR[$s]} idle "$IDLE_CONNS"; }
    local line=
    read -r line <&"${IDLE[0]}" || true
    [[ $line == ready ]] || { echo "idle clients failed for $s" >&2; exec {IDLE[1]}>&-; wait "$IDLE_PID" || true; continue; }
    sleep 0.5
    rss_kb "$s"
    exec {IDLE[1]}>&-
    wait "$IDLE_PID" || true
    sleep 0.5
  done
}

load_rss() { # SYSTEM: peak RSS during a 10-subscriber broadcast run, REPS times
  local s=$1
  for _ in $(seq "$REPS"); do
    $pfx ${ADDR[$s]} signal 10 "$REP_SECONDS" 1 "$BATCH" >/dev/null 2>>"$work/client.err" &
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

start=$(date +%s)
for s in "${SYSTEMS[@]}"; do
  measure "start|rss|$s" start_rss "$s"
done
# idle memory first, on servers no workload has grown yet; again after each mode's run
pfx=""
for s in "${SYSTEMS[@]}"; do
  measure "fresh|rss idle|$s" idle_rss "$s"
done
for mode in $MODES; do
  if [[ $mode == pinned ]]; then
    pin_servers 0; pfx="taskset -c 0"
  else
    pin_servers "0-$(($(nproc) - 1))"; pfx=""
  fi
  for size in 8 4096 1048576; do
    measure "$mode|call $size|socketpair" $pfx $FL call $size "$REP_SECONDS" "$REPS"
    for s in "${SYSTEMS[@]}"; do
      measure "$mode|call $size|$s" $pfx ${ADDR[$s]} call $size "$REP_SECONDS" "$REPS"
    done
  done
  for n in 1 10; do
    for s in "${SYSTEMS[@]}"; do
      measure "$mode|signal $n|$s" $pfx ${ADDR[$s]} signal $n "$REP_SECONDS" "$REPS" "$BATCH"
    done
  done
  measure "$mode|connect|socketpair" $pfx $FL connect "$REP_SECONDS" "$REPS"
  for s in "${SYSTEMS[@]}"; do
    measure "$mode|connect|$s" $pfx ${ADDR[$s]} connect "$REP_SECONDS" "$REPS"
  done
  for s in "${SYSTEMS[@]}"; do
    measure "$mode|rss idle|$s" idle_rss "$s"
    measure "$mode|rss load|$s" load_rss "$s"
  done
done
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
  set -- $v "$2"
  echo "$(fmt "$1") $4 ($(fmt "$2")–$(fmt "$3"))"
}
ratio() { # KEY_A KEY_B INVERT: cost ratio of A to B (>1: A is slower or bigger)
  local a=${R[$1]:-} b=${R[$2]:-}
  [[ -z $a || -z $b || $a == failed || $b == failed ]] && { echo "—"; return; }
  awk -v a="${a%% *}" -v b="${b%% *}" -v inv="$3" 'BEGIN {
    r = inv ? b / a : a / b; printf "%.2fx", r }'
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
} >"$OUT"
cat "$OUT"
