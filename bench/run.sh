#!/bin/bash
# The benchmark in one command: installs what it needs from Debian (wrk,
# nginx, varnish, redis-server, valgrind) when run as root, builds usergate
# with -O2 into build/bench, and runs bench/bench.py: cache hits against
# nginx (return, static file, proxy_cache) and Varnish with the server side
# pinned to one CPU and wrk to the other, the miss path, 10,000 idle
# keep-alive connections, and instructions and allocations per hit.
# Usage: bench/run.sh [hits] [miss] [idle] [scaling] [profile] [cluster]   (default: all)
# Environment: BENCH_SECONDS (10), BENCH_CONNECTIONS (64), BENCH_SERVER_CPU
# (0), BENCH_CLIENT_CPU (1), USERGATE_BIN (a prebuilt binary).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
need=()
for t in wrk:wrk nginx:nginx-light varnishd:varnish redis-server:redis-server \
    valgrind:valgrind taskset:util-linux; do
    command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "bench: install ${need[*]} (apt-get) or run as root"; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ -z "${USERGATE_BIN:-}" ]; then
    "$top/scripts/install-deps.sh" >/dev/null
    [ -x "$top/configure" ] || (cd "$top" && ./autogen.sh >/dev/null 2>&1)
    mkdir -p "$top/build/bench"
    (cd "$top/build/bench" && { [ -f Makefile ] || "$top/configure" -q CFLAGS="-O2 -g"; } &&
        make -s -j"$(nproc)" src/usergate >/dev/null)
    export USERGATE_BIN=$top/build/bench/src/usergate
fi
exec /usr/bin/python3 "$top/bench/bench.py" "$@"
