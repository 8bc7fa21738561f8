#!/bin/bash
# Quick start: install what is missing, build, make sure a Redis answers on
# 127.0.0.1:6379 (start a throwaway one if not), and run usergate in the
# foreground with a private (mode 600) copy of conf/minimal.conf. Credentials come from TWILIO_ACCOUNT_SID and
# TWILIO_AUTH_TOKEN (or TWILIO_API_KEY/TWILIO_API_SECRET).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
"$top/scripts/install-deps.sh"
if [ ! -x build/local/src/usergate ] || [ -n "$(find src -newer build/local/src/usergate -print -quit)" ]; then
    ./autogen.sh >/dev/null 2>&1
    mkdir -p build/local
    (cd build/local && "$top/configure" -q --with-systemd && make -s -j"$(nproc)")
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    mkdir -p "$top/run/redis"
    redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no \
        --dir "$top/run/redis" --daemonize yes --logfile "$top/run/redis/redis.log"
    echo "started redis-server on 127.0.0.1:6379 (data in run/redis, not persisted)"
fi
# The config holds the example client's secret: usergate reads such a file
# only when nobody else can, so it runs from a private copy.
mkdir -p "$top/run"
install -m 600 conf/minimal.conf "$top/run/minimal.conf"
exec build/local/src/usergate -c "$top/run/minimal.conf"
