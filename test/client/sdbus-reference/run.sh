#!/usr/bin/env bash
# Builds sd-bus 2015 (once, into $SDBUS_BUILD, default /tmp/sdbus-2015) and vectors.c
# against it, and prints the vectors the client codec's tests hold as hex literals.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SHARED=${SHARED:-$HERE/../../../../shared}
BUILD=${SDBUS_BUILD:-/tmp/sdbus-2015}
bash "$SHARED/sd-bus-2015/build.sh" "$BUILD" >&2
S=$BUILD/src
gcc -g -O1 -w -fcommon -include "$S/config.h" -I "$S" -I "$S/src/shared" -I "$S/src/systemd" \
  -I "$S/src/libsystemd/sd-bus" -o "$BUILD/codec-vectors" "$HERE/vectors.c" \
  "$S/.libs/libsystemd-dump.a" "$S/.libs/libsystemd-internal.a" "$S/.libs/libsystemd-shared.a" -lcap -lm -lrt -pthread
"$BUILD/codec-vectors" "$@"
