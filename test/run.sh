#!/usr/bin/env bash
# The one setup+test command: installs what a fresh Debian machine lacks,
# builds kdbusfs (npm ci: node-gyp + tsc), runs every test/*.test.ts with tap,
# and prints as its very last line "N passed, M failed, K skipped".
# Exits non-zero if anything failed, setup included.
set -uo pipefail
cd "$(dirname "$0")/.."

setup_failed() {
  echo "SETUP FAILED: $1" >&2
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
}

# Debian packages needed: a C/C++ toolchain and python3 (node-gyp), libcap-dev
# (the kdbus selftests include sys/capability.h), util-linux (mount, unshare),
# coreutils (stdbuf).
missing=()
for pair in gcc:gcc g++:g++ make:make python3:python3 unshare:util-linux stdbuf:coreutils; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
dpkg -s libcap-dev >/dev/null 2>&1 || missing+=(libcap-dev)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt_log=$(mktemp)
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
      >"$apt_log" 2>&1 </dev/null; then
    cat "$apt_log" >&2
    setup_failed "apt-get install ${missing[*]}"
  fi
  rm -f "$apt_log"
fi

# Real peers some tests use (a container engine, a capture reader, D-Bus tools).
# Installed when the package archive is reachable; a test whose peer is still
# missing skips and says which package it needs.
optional=()
for pkg in podman tshark dbus-broker dbus-bin libglib2.0-bin python3-dbus python3-gi libsystemd-dev systemd; do
  dpkg -s "$pkg" >/dev/null 2>&1 || optional+=("$pkg")
done
if ((${#optional[@]})); then
  echo "installing (optional): ${optional[*]}" >&2
  { echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${optional[@]}"; } \
    >/dev/null 2>&1 </dev/null || echo "could not install ${optional[*]}: the tests needing them skip" >&2
fi

# npm ci runs the package's install (node-gyp rebuild) and prepare (tsc) scripts.
if [[ -f package-lock.json ]]; then
  npm ci --no-audit --no-fund </dev/null >&2 || setup_failed "npm ci"
else
  npm install --no-audit --no-fund </dev/null >&2 || setup_failed "npm install"
fi
# tap runs the tests without type checking: check them (and lib) against each other here.
npx tsc -p test/tsconfig.json </dev/null >&2 || setup_failed "type check of test/ and lib/"

tap_out=$(mktemp)
trap 'rm -f "$tap_out"' EXIT
# Raw TAP, so that every test point can be counted (test/tap-count.mjs).
npx tap --reporter=tap </dev/null | tee "$tap_out"
tap_exit=${PIPESTATUS[0]}
node test/tap-count.mjs "$tap_out" "$tap_exit"
