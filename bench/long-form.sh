# What the long forms (bench/fuzz-long.sh, bench/soak.sh) share: a fresh
# `kdbusfs mount` and the server's census. Sourced.

# serve: mounts kdbusfs on $mnt (with KDBUSFS_MOUNT_ARGS), its stderr in
# $tmp/server.log, and sets $server; on exit the server is stopped and $tmp
# removed once nothing is mounted there. Exits 1 if the mount does not come up.
serve() {
  # shellcheck disable=SC2086
  KDBUSFS_QUIET=1 node dist/lib/cli.js mount "$mnt" ${KDBUSFS_MOUNT_ARGS:-} 2>"$tmp/server.log" &
  server=$!
  trap stop_serving EXIT
  for _ in $(seq 100); do [[ -e $mnt/control ]] && break; sleep 0.1; done
  [[ -e $mnt/control ]] || { echo "mount did not come up"; cat "$tmp/server.log"; exit 1; }
}

stop_serving() {
  kill -TERM "$server" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$server" 2>/dev/null
  grep -q " $mnt " /proc/self/mounts && node dist/lib/cli.js umount "$mnt" 2>/dev/null
  grep -q " $mnt " /proc/self/mounts || rm -rf "$tmp"
}

# census PID LOG: the census of the kdbusfs server PID (lib/core/census.ts:
# SIGUSR2 makes it write one JSON line to its stderr, which goes to LOG),
# memory left out, as one JSON line; empty if none came within 5 s.
census() {
  local pid=$1 log=$2 n
  n=$(grep -c 'kdbusfs\[census\]' "$log")
  kill -USR2 "$pid"
  for _ in $(seq 50); do (( $(grep -c 'kdbusfs\[census\]' "$log") > n )) && break; sleep 0.1; done
  (( $(grep -c 'kdbusfs\[census\]' "$log") > n )) || return 0
  grep 'kdbusfs\[census\]' "$log" | tail -1 | sed 's/.*kdbusfs\[census\] //' |
    node -e 'const c = JSON.parse(require("fs").readFileSync(0, "utf8")); delete c.memory; console.log(JSON.stringify(c))'
}
