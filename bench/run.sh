#!/bin/bash
# Benchmark: usergate's cache-hit path against peers run in the same session on
# this machine, reported as ratios (numbers are not tests).
#   peer A: nginx returning the same user JSON from a fixed `return 200` (ceiling:
#           an HTTP server doing no work at all)
#   peer B: nginx as a caching reverse proxy (proxy_cache) in front of the same
#           mock Twilio, i.e. the hand-written alternative to usergate
# Everything listens on 127.0.0.1 only. Usage: bench/run.sh [seconds] [connections]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-10}
conns=${2:-64}
bin=${USERGATE_BIN:-$top/build/plain/src/usergate}
for tool in wrk nginx redis-server; do
    command -v $tool >/dev/null || { echo "need $tool (apt-get install wrk nginx-light redis-server)"; exit 1; }
done
[ -x "$bin" ] || { echo "build first (scripts/test.sh or make): $bin"; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

ACC=AC$(printf '%032d' 1); TOKEN=benchtoken; IS=IS$(printf '%032x' 7)
rport=$(free_port); mport=$(free_port); gport=$(free_port); aport=$(free_port)
nport=$(free_port); pport=$(free_port)

redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null &
pids+=($!)
/usr/bin/python3 "$top/tests/integration/mock_twilio.py" --port "$mport" --account-sid "$ACC" \
    --auth-token "$TOKEN" --default-service "$IS" >"$work/mock.log" 2>&1 &
pids+=($!)
cat >"$work/usergate.conf" <<CONF
[server]
listen = 127.0.0.1:$gport
admin_listen = 127.0.0.1:$aport
workers = ${WORKERS:-1}
access_log = off
log_level = warning
[upstream]
conversations_url = http://127.0.0.1:$mport
chat_url = http://127.0.0.1:$mport
account_sid = $ACC
auth_token = $TOKEN
default_service_sid = $IS
[redis]
address = 127.0.0.1:$rport
[cache]
ttl = 3600
[client bench]
secret = benchsecret
CONF
"$bin" -c "$work/usergate.conf" 2>"$work/usergate.log" &
pids+=($!)
sleep 1
auth="Authorization: Basic $(printf 'bench:benchsecret' | base64)"
curl -sf -o /dev/null -H "$auth" -d Identity=alice "http://127.0.0.1:$gport/v1/Services/$IS/Users" ||
    { echo "create failed"; cat "$work/usergate.log"; exit 1; }
path="/v1/Services/$IS/Users/alice"
body=$(curl -sf -H "$auth" "http://127.0.0.1:$gport$path")
curl -sf -o /dev/null -D - -H "$auth" "http://127.0.0.1:$gport$path" | grep -qi 'x-cache: hit' ||
    { echo "expected a cache hit"; exit 1; }

# nginx peers (one worker each, like workers = 1 above)
mkdir -p "$work/nginx/cache"
# nginx workers drop privileges: let them reach the cache.
chmod 755 "$work" && chmod 777 "$work/nginx" "$work/nginx/cache"
printf '%s' "$body" >"$work/user.json"
cat >"$work/nginx.conf" <<NGX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  proxy_cache_path $work/nginx/cache keys_zone=users:10m;
  server {
    listen 127.0.0.1:$nport;
    location / { default_type application/json; return 200 '$(sed "s/'/\\\\'/g" "$work/user.json")'; }
  }
  server {
    listen 127.0.0.1:$pport;
    location / {
      proxy_pass http://127.0.0.1:$mport;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Basic $(printf '%s:%s' "$ACC" "$TOKEN" | base64 -w0)";
      proxy_cache users;
      proxy_cache_valid 200 404 1h;
      proxy_ignore_headers Set-Cookie Cache-Control Expires;
    }
  }
}
NGX
nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!)
sleep 0.5
curl -sf -o /dev/null "http://127.0.0.1:$pport$path" || { echo "nginx proxy peer failed"; cat "$work/nginx-error.log"; exit 1; }

run() { # label url [header]
    local out
    out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency ${3:+-H "$3"} "$2")
    local rps p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    printf '%-34s %12s req/s   p99 %s\n' "$1" "$rps" "$p99" >&2
    echo "$rps"
}
echo "wrk -t1 -c$conns -d${secs}s, body $(wc -c <"$work/user.json") bytes, 127.0.0.1" >&2
a=$(run "nginx return 200 (ceiling)" "http://127.0.0.1:$nport$path")
b=$(run "nginx proxy_cache (peer)" "http://127.0.0.1:$pport$path")
u=$(run "usergate cache HIT (Redis)" "http://127.0.0.1:$gport$path" "$auth")
awk -v a="$a" -v b="$b" -v u="$u" 'BEGIN {
    printf "usergate / nginx return    = %.2fx\n", u / a;
    printf "usergate / nginx proxy_cache = %.2fx\n", u / b }'
