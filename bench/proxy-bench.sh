#!/usr/bin/env bash
# A method call between two sd-bus programs of today (bench/sdbus-bench.c,
# libsystemd of the machine): through `kdbusfs proxy` on a kdbusfs bus,
# against the same call over dbus-broker and dbus-daemon, in one run.
# Prints the medians (us per call, SIZE-byte "ay" echoed) and the ratios;
# PROFILE=1 also profiles the proxy (node --cpu-prof) during its run and
# prints its heaviest functions. COUNT=1 counts, per call of COUNT_SIZE
# bytes (default 8), the FUSE requests the proxy makes by opcode (every one
# is a round trip through the kdbusfs server), its kdbus ioctls, its waits,
# epoll_ctl, sendmsg and recvmsg, and the context switches of the proxy and of the kdbusfs server (perf
# tracepoints, system-wide for a 2 s run, filtered by process;
# bench/client-call-count.mjs). BASELINE=DIR runs a second proxy from
# another built checkout (DIR/dist) on the same bus beside this one, timed
# right after it for every size and counted with COUNT: an A/B of a proxy
# change in one run. Pin the whole run for steadier figures (taskset -c 0).
#
#   bash bench/proxy-bench.sh            # SIZES="8 4096 65536" SECONDS_PER=1 REPS=5
#   COUNT=1 BASELINE=/work/old taskset -c 0 bash bench/proxy-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-8 4096 65536}
SECONDS_PER=${SECONDS_PER:-1}
REPS=${REPS:-5}

[[ $(id -u) == 0 ]] || { echo "bench/proxy-bench.sh: needs root (it mounts kdbusfs)" >&2; exit 1; }
missing=()
for p in dbus-daemon dbus-broker libsystemd-dev gcc; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
[[ -f dist/lib/cli.js ]] || npm run build >&2

work=$(mktemp -d /tmp/kdbusfs-proxy-bench.XXXXXX)
pids=()
kd_pid=
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  [[ -n $kd_pid ]] && kill -INT "$kd_pid" 2>/dev/null || true
  sleep 0.3
  mountpoint -q "$work/kdbus" 2>/dev/null && umount -l "$work/kdbus" || true
  rm -rf "$work"
}
trap cleanup EXIT

gcc -O2 -Wall -o "$work/sdbus-bench" bench/sdbus-bench.c -lsystemd
gcc -O2 -Wall -Iinclude -o "$work/kdbus-bench" bench/kdbus-bench.c

wait_for() { # PATH WHAT
  for _ in $(seq 400); do [[ -e $1 ]] && return 0; sleep 0.05; done
  echo "$2 did not come up" >&2; cat "$work"/*.log >&2; exit 1
}

# kdbusfs, a bus, the proxy
mkdir -p "$work/kdbus"
KDBUSFS_QUIET=1 node dist/lib/cli.js mount "$work/kdbus" >"$work/kdbusfs.log" 2>&1 &
kd_pid=$!
wait_for "$work/kdbus/control" kdbusfs
node --input-type=module -e "
  const { makeBus } = await import('$PWD/dist/lib/client/index.js');
  makeBus('0-bench', { root: '$work/kdbus', access: 'world' });
  process.stdout.write('ready\n');
  setInterval(() => {}, 1 << 30);
" >"$work/bus.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do grep -q ready "$work/bus.log" 2>/dev/null && break; sleep 0.05; done
prof=()
[[ ${PROFILE:-0} == 1 ]] && prof=(--cpu-prof --cpu-prof-dir="$work/prof")
KDBUSFS_QUIET=1 node "${prof[@]}" dist/lib/cli.js proxy --bus "$work/kdbus/0-bench/bus" --listen "$work/proxy.sock" >"$work/proxy.log" 2>&1 &
proxy_pid=$!
pids+=($proxy_pid)
wait_for "$work/proxy.sock" "kdbusfs proxy"
systems=(proxy)
if [[ -n ${BASELINE:-} ]]; then
  [[ -f $BASELINE/dist/lib/cli.js ]] || { echo "BASELINE=$BASELINE: no dist/lib/cli.js (npm ci there)" >&2; exit 1; }
  KDBUSFS_QUIET=1 node "$BASELINE/dist/lib/cli.js" proxy --bus "$work/kdbus/0-bench/bus" --listen "$work/baseline.sock" >"$work/baseline.log" 2>&1 &
  baseline_pid=$!
  pids+=($baseline_pid)
  wait_for "$work/baseline.sock" "the baseline's kdbusfs proxy"
  systems+=(baseline)
fi

# dbus-daemon and dbus-broker as bench/run.sh runs them
cat >"$work/daemon.conf" <<CONF
<busconfig>
  <type>custom</type>
  <listen>unix:path=$work/daemon.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
CONF
dbus-daemon --config-file="$work/daemon.conf" --nofork --nosyslog >"$work/daemon.log" 2>&1 &
pids+=($!)
wait_for "$work/daemon.sock" dbus-daemon
"$work/sdbus-bench" broker-controller "$work/broker.sock" >"$work/broker.pid" 2>"$work/broker.log" &
pids+=($!)
for _ in $(seq 200); do [[ -s $work/broker.pid ]] && break; sleep 0.05; done
pids+=("$(cat "$work/broker.pid")")

# a throwaway round first: the proxy's code is compiled by V8 as it runs, and the first
# size measured would carry that
for sys in "${systems[@]}"; do "$work/sdbus-bench" "unix:path=$work/$sys.sock" call 8 1 1 >/dev/null; done

median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
declare -A R
for size in $SIZES; do
  R[native,$size]=$("$work/kdbus-bench" "$work/kdbus" call "$size" "$SECONDS_PER" "$REPS" | median)
  for sys in "${systems[@]}" dbus-broker dbus-daemon; do
    case $sys in
      proxy | baseline) addr=unix:path=$work/$sys.sock ;;
      dbus-broker) addr=unix:path=$work/broker.sock ;;
      dbus-daemon) addr=unix:path=$work/daemon.sock ;;
    esac
    R[$sys,$size]=$("$work/sdbus-bench" "$addr" call "$size" "$SECONDS_PER" "$REPS" | median)
  done
done

echo "us per sd_bus_call (median of $REPS runs of ${SECONDS_PER}s), $(nproc) CPUs, node $(node --version)"
echo "| body | kdbusfs proxy (sd-bus) | kdbusfs native (kdbus-bench) | dbus-broker | dbus-daemon | proxy ÷ dbus-broker | proxy ÷ dbus-daemon | proxy ÷ native |"
echo "|---|---|---|---|---|---|---|---|"
for size in $SIZES; do
  p=${R[proxy,$size]} n=${R[native,$size]} b=${R[dbus-broker,$size]} d=${R[dbus-daemon,$size]}
  r() { awk "BEGIN {printf \"%.2f\", $1 / $2}"; }
  echo "| $size B | $p | $n | $b | $d | $(r "$p" "$b") | $(r "$p" "$d") | $(r "$p" "$n") |"
done
if [[ -n ${BASELINE:-} ]]; then
  echo
  echo "| body | this proxy | baseline proxy ($BASELINE) | this ÷ baseline |"
  echo "|---|---|---|---|"
  for size in $SIZES; do
    echo "| $size B | ${R[proxy,$size]} | ${R[baseline,$size]} | $(awk "BEGIN {printf \"%.2f\", ${R[proxy,$size]} / ${R[baseline,$size]}}") |"
  done
fi

if [[ ${COUNT:-0} == 1 ]]; then
  for sys in "${systems[@]}"; do
    pid=$proxy_pid
    [[ $sys == baseline ]] && pid=$baseline_pid
    # BENCH_OPS: the calls made (warm-up included) on stderr
    perf record -q -a -o "$work/perf-$sys" \
      -e fuse:fuse_request_send -e syscalls:sys_enter_ioctl -e syscalls:sys_exit_ioctl \
      -e syscalls:sys_enter_epoll_wait -e syscalls:sys_enter_epoll_pwait -e syscalls:sys_enter_epoll_ctl \
      -e syscalls:sys_enter_sendmsg -e syscalls:sys_enter_recvmsg -e sched:sched_switch \
      -- env BENCH_OPS=1 "$work/sdbus-bench" "unix:path=$work/$sys.sock" call "${COUNT_SIZE:-8}" 2 1 >/dev/null 2>"$work/ops-$sys"
    echo "$pid $kd_pid $(awk '/^ops/ {print $2}' "$work/ops-$sys")" >"$work/calls-$sys"
    echo
    perf script -i "$work/perf-$sys" -F pid,tid,event,trace 2>/dev/null \
      | node bench/client-call-count.mjs "$sys (${COUNT_SIZE:-8} B calls)" "$work/calls-$sys" proxy kdbusfs
  done
fi

if [[ ${PROFILE:-0} == 1 ]]; then
  kill -INT "$proxy_pid"
  for _ in $(seq 100); do compgen -G "$work/prof/*.cpuprofile" >/dev/null && break; sleep 0.1; done
  sleep 0.5
  echo
  echo "the proxy's heaviest functions (self time):"
  node -e "
    const p = JSON.parse(require('fs').readFileSync(process.argv[1], 'utf8'));
    const dt = {}; const byId = new Map(p.nodes.map(n => [n.id, n]));
    p.samples.forEach((id, i) => { const n = byId.get(id); const f = n.callFrame;
      const k = (f.functionName || '(anonymous)') + ' ' + f.url.split('/').slice(-2).join('/') + ':' + (f.lineNumber + 1);
      dt[k] = (dt[k] || 0) + (p.timeDeltas[i] || 0); });
    const total = Object.values(dt).reduce((a, b) => a + b, 0);
    Object.entries(dt).sort((a, b) => b[1] - a[1]).slice(0, 15)
      .forEach(([k, v]) => console.log((100 * v / total).toFixed(1).padStart(5) + '%  ' + k));
  " "$(ls "$work"/prof/*.cpuprofile | head -1)"
fi
