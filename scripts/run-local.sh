#!/bin/bash
# Quick start: install what is missing, build, make sure a Redis answers on
# 127.0.0.1:6379 (start a throwaway one if not), and run usergate in the
# foreground with a private (mode 600) copy of conf/minimal.conf.
#
# With Twilio credentials in the environment (TWILIO_ACCOUNT_SID and
# TWILIO_AUTH_TOKEN, or TWILIO_API_KEY/TWILIO_API_SECRET) it fronts Twilio.
# Without them it runs in DEMO MODE: the bundled mock Twilio
# (tests/integration/mock_twilio.py) on 127.0.0.1:8089 is the upstream, so
# README's examples work on a machine with no account and no internet.
# Environment: USERGATE_BIN (a built binary: skip the build), USERGATE_RUN_DIR
# (where configs and Redis data go; default run/).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
run=${USERGATE_RUN_DIR:-$top/run}
"$top/scripts/install-deps.sh"
bin=${USERGATE_BIN:-}
if [ -z "$bin" ]; then
    bin=build/local/src/usergate
    if [ ! -x "$bin" ] || [ -n "$(find src -newer "$bin" -print -quit)" ]; then
        ./autogen.sh >/dev/null 2>&1
        mkdir -p build/local
        (cd build/local && "$top/configure" -q --with-systemd && make -s -j"$(nproc)")
    fi
fi
mkdir -p "$run"
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    mkdir -p "$run/redis"
    redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no \
        --dir "$run/redis" --daemonize yes --logfile "$run/redis/redis.log"
    echo "started redis-server on 127.0.0.1:6379 (data in $run/redis, not persisted)"
fi
# The config holds the example client's secret: usergate reads such a file
# only when nobody else can, so it runs from a private copy.
install -m 600 conf/minimal.conf "$run/minimal.conf"
if [ -n "${TWILIO_ACCOUNT_SID:-}" ] || [ -n "${TWILIO_API_KEY:-}" ]; then
    exec "$bin" -c "$run/minimal.conf"
fi

# Demo mode: the mock Twilio, one account and default service, on loopback.
account=AC0000000000000000000000000000dea0
service=IS0000000000000000000000000000dea0
/usr/bin/python3 "$top/tests/integration/mock_twilio.py" --port 8089 --account-sid "$account" \
    --auth-token demo-auth-token --default-service "$service" >"$run/mock-twilio.log" 2>&1 &
mock=$!
trap 'kill "$mock" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    curl -s -o /dev/null http://127.0.0.1:8089/_mock/stats && break
    kill -0 "$mock" 2>/dev/null || { echo "the mock Twilio did not start:"; cat "$run/mock-twilio.log"; exit 1; }
    sleep 0.1
done
umask 077
{
    cat conf/minimal.conf
    cat <<CONF

; scripts/run-local.sh: no Twilio credentials, so the bundled mock Twilio.
[upstream]
demo = on
conversations_url = http://127.0.0.1:8089
chat_url = http://127.0.0.1:8089
account_sid = $account
auth_token = demo-auth-token
default_service_sid = $service
CONF
} >"$run/demo.conf"
echo "*** DEMO MODE: no Twilio credentials in the environment; the upstream is the bundled"
echo "*** mock Twilio on 127.0.0.1:8089 (nothing reaches Twilio). Set TWILIO_ACCOUNT_SID and"
echo "*** TWILIO_AUTH_TOKEN to front your account instead."
"$bin" -c "$run/demo.conf" &
ug=$!
trap 'kill "$ug" "$mock" 2>/dev/null || true' EXIT
trap 'kill -TERM "$ug" 2>/dev/null || true' INT TERM
wait "$ug" || true
wait "$ug" 2>/dev/null || true
