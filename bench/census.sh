# Sourced by bench/fuzz-long.sh and bench/soak.sh.
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
