#!/usr/bin/env bash
# Which memory cgroup pays for pages written into a memfd pool
# (bench/memcg-charge.c): two fresh memory cgroups A and B under the
# memory hierarchy (cgroup v2 if it has the memory controller, else v1),
# removed afterwards. Needs root. Results in the README (Reliability).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
  root=/sys/fs/cgroup
else
  root=$(awk '$3 == "cgroup" && $4 ~ /(^|,)memory(,|$)/ { print $2; exit }' /proc/self/mounts)
fi
[[ -n $root ]] || { echo "no memory cgroup hierarchy mounted"; exit 1; }
a=$root/kdbusfs-memcg-a.$$ b=$root/kdbusfs-memcg-b.$$
cleanup() { rmdir "$a" "$b" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
gcc -O2 -Wall -o "$tmp/memcg-charge" bench/memcg-charge.c
mkdir "$a" "$b"
echo "memory cgroups under $root ($(uname -r))"
"$tmp/memcg-charge" "$a" "$b"
