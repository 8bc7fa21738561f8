"""usergate against its peers, in one run, on this machine (bench/run.sh).

The server side (usergate with its Redis, or the peer under test) is pinned
to one core, wrk and the helpers to the other; every figure is a ratio to a
peer measured in the same run. Nothing here is a test: numbers go to
bench/README.md by hand. Loopback only.
"""

import http.client
import json
import os
import re
import resource
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))

SECS = int(os.environ.get("BENCH_SECONDS", "10"))
# Every hit scenario runs this many times, the rounds interleaved, and the
# median round is reported: a shared machine drifts within a run.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
SERVER_CPU = os.environ.get("BENCH_SERVER_CPU", "0")
CLIENT_CPU = os.environ.get("BENCH_CLIENT_CPU", "1")
BIN = os.environ.get("USERGATE_BIN") or os.path.join(TOP, "build", "bench", "src", "usergate")
ACCOUNT = "AC" + "0" * 31 + "1"
TOKEN = "bench-token-0123456789"
SERVICE = "IS" + "0" * 31 + "7"
CLIENT = ("bench", "bench-secret-01")
AUTH = "Basic " + __import__("base64").b64encode(("%s:%s" % CLIENT).encode()).decode()
UPSTREAM_AUTH = "Basic " + __import__("base64").b64encode(
    ("%s:%s" % (ACCOUNT, TOKEN)).encode()).decode()
PATH = "/v1/Services/%s/Users/alice" % SERVICE


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def pinned(cpu, argv):
    return ["taskset", "-c", cpu] + argv


def wait_port(port, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on %d" % port)


def get(port, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, argv, **kw):
        p = subprocess.Popen(argv, stdout=kw.pop("stdout", subprocess.DEVNULL),
                             stderr=kw.pop("stderr", subprocess.DEVNULL), **kw)
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self):
        for p in reversed(self.procs):
            self.stop(p)


def wrk(url, header=None, script=None, conns=CONNS, secs=SECS):
    argv = pinned(CLIENT_CPU, ["wrk", "-t1", "-c%d" % conns, "-d%ds" % secs, "--latency"])
    if header:
        argv += ["-H", header]
    if script:
        argv += ["-s", script]
    out = subprocess.run(argv + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % p, out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": pct(50), "p99": pct(99),
            "non2xx": int(errors.group(1)) if errors else 0}


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


class Bench:
    def __init__(self):
        self.work = tempfile.mkdtemp(prefix="usergate-bench-")
        os.chmod(self.work, 0o755)
        self.p = Procs()
        self.results = []

    # ---- the shared parts: Redis and the mock Twilio
    def setup(self):
        self.rport, self.mport = free_port(), free_port()
        self.redis = self.p.start(pinned(SERVER_CPU, [
            "redis-server", "--port", str(self.rport), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", self.work]))
        self.mock = self.p.start(pinned(CLIENT_CPU, [
            "/usr/bin/python3", os.path.join(TOP, "tests", "integration", "mock_twilio.py"),
            "--port", str(self.mport), "--account-sid", ACCOUNT, "--auth-token", TOKEN,
            "--default-service", SERVICE]))
        wait_port(self.rport)
        wait_port(self.mport)
        c = http.client.HTTPConnection("127.0.0.1", self.mport)
        c.request("POST", "/_mock/users", body=json.dumps({"identity": "alice",
                                                           "service": SERVICE}))
        assert c.getresponse().status == 201
        st, _, self.body = get(self.mport, PATH, {"Authorization": UPSTREAM_AUTH})
        assert st == 200, st
        with open(os.path.join(self.work, "user.json"), "wb") as f:
            f.write(self.body)

    def mock_requests(self, path):
        st, _, body = get(self.mport, "/_mock/requests")
        return [r for r in json.loads(body) if r["path"] == path and r["method"] == "GET"]

    # ---- usergate
    def usergate(self, local=False, log=False, workers=1, extra="", wrapper=None, stderr=None):
        port, admin = free_port(), free_port()
        conf = os.path.join(self.work, "usergate-%d.conf" % port)
        with open(conf, "w") as f:
            f.write("""[server]
listen = 127.0.0.1:%d
admin_listen = 127.0.0.1:%d
workers = %d
access_log = %s
log_level = %s
max_connections = 12000
max_connections_per_ip = 0
[upstream]
conversations_url = http://127.0.0.1:%d
chat_url = http://127.0.0.1:%d
account_sid = %s
auth_token = %s
default_service_sid = %s
[redis]
address = 127.0.0.1:%d
[cache]
ttl = 3600
negative_ttl = 3600
local_entries = %d
local_ttl = 3600
%s
[client bench]
secret = %s
""" % (port, admin, workers, "logfmt" if log else "off", "info" if log else "warning",
                self.mport, self.mport, ACCOUNT, TOKEN, SERVICE, self.rport,
                100000 if local else 0, extra, CLIENT[1]))
        os.chmod(conf, 0o600)
        err = stderr or open(os.path.join(self.work, "usergate-%d.log" % port), "wb")
        argv = (wrapper or []) + [BIN, "-c", conf]
        proc = self.p.start(pinned(SERVER_CPU, argv), stderr=err)
        wait_port(port, 60)
        wait_port(admin, 60)
        for _ in range(3):  # miss, Redis hit (fills the local tier), hit
            st, hdrs, _ = get(port, PATH, {"Authorization": AUTH})
            assert st == 200, st
        assert hdrs.get("X-Cache") == "HIT", hdrs
        return proc, port, admin

    # ---- peers
    def nginx(self, log=False):
        port, sport, pport = free_port(), free_port(), free_port()
        root = os.path.join(self.work, "nginx-%d" % port)
        os.makedirs(os.path.join(root, "cache"))
        os.makedirs(os.path.join(root, "static", "v1", "Services", SERVICE, "Users"))
        shutil.copy(os.path.join(self.work, "user.json"),
                    os.path.join(root, "static", PATH.lstrip("/")))
        for d, _, files in os.walk(root):
            os.chmod(d, 0o777)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
        body = self.body.decode().replace("\\", "\\\\").replace("'", "\\'")
        logline = ("access_log %s/access.log;" % root) if log else "access_log off;"
        conf = os.path.join(root, "nginx.conf")
        with open(conf, "w") as f:
            f.write("""worker_processes 1;
daemon off;
master_process off;
pid %(root)s/nginx.pid;
error_log %(root)s/error.log;
events { worker_connections 16384; }
http {
  %(log)s
  proxy_cache_path %(root)s/cache keys_zone=users:10m;
  server { listen 127.0.0.1:%(port)d;
           location / { default_type application/json; return 200 '%(body)s'; } }
  server { listen 127.0.0.1:%(sport)d; root %(root)s/static; default_type application/json; }
  server { listen 127.0.0.1:%(pport)d;
    location / {
      proxy_pass http://127.0.0.1:%(mport)d;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "%(auth)s";
      proxy_cache users;
      proxy_cache_valid 200 404 1h;
      proxy_ignore_headers Set-Cookie Cache-Control Expires;
    } }
}
""" % {"root": root, "log": logline, "port": port, "sport": sport, "pport": pport,
                "mport": self.mport, "auth": UPSTREAM_AUTH, "body": body})
        proc = self.p.start(pinned(SERVER_CPU, ["nginx", "-c", conf, "-p", root]))
        for p in (port, sport, pport):
            wait_port(p)
        get(pport, PATH)
        return proc, port, sport, pport

    def varnish(self):
        port = free_port()
        vcl = os.path.join(self.work, "bench.vcl")
        with open(vcl, "w") as f:
            f.write("""vcl 4.1;
backend twilio { .host = "127.0.0.1"; .port = "%d"; }
sub vcl_recv { unset req.http.Authorization; unset req.http.Cookie; return (hash); }
sub vcl_backend_fetch { set bereq.http.Authorization = "%s"; }
sub vcl_backend_response { set beresp.ttl = 1h; }
""" % (self.mport, UPSTREAM_AUTH))
        vdir = os.path.join(self.work, "varnish-%d" % port)
        proc = self.p.start(pinned(SERVER_CPU, [
            "varnishd", "-F", "-a", "127.0.0.1:%d" % port, "-f", vcl, "-s", "malloc,64m",
            "-n", vdir, "-p", "thread_pools=1", "-p", "thread_pool_min=10"]))
        wait_port(port, 30)
        get(port, PATH)
        return proc, port

    # ---- reporting
    def row(self, label, r):
        self.results.append((label, r))
        print("%-46s %10.0f req/s  p50 %6.2f ms  p99 %6.2f ms%s" % (
            label, r["rps"], r["p50"], r["p99"],
            ("  (%d non-2xx!)" % r["non2xx"]) if r["non2xx"] else ""), flush=True)
        return r

    def hits(self):
        print("== cache hits: wrk -t1 -c%d -d%ds, body %d bytes, server on CPU %s, wrk on CPU %s, "
              "median of %d interleaved rounds" % (CONNS, SECS, len(self.body), SERVER_CPU,
                                                    CLIENT_CPU, ROUNDS), flush=True)
        url = lambda port: "http://127.0.0.1:%d%s" % (port, PATH)
        runs = {}

        only = os.environ.get("BENCH_ONLY", "").split()

        def want(key):
            return not only or key in only

        def record(key, r):
            runs.setdefault(key, []).append(r)

        for _ in range(ROUNDS):
            if want("ret") or want("static") or want("proxy"):
                proc, port, sport, pport = self.nginx(log=False)
                for key, p in (("ret", port), ("static", sport), ("proxy", pport)):
                    if want(key):
                        record(key, wrk(url(p)))
                self.p.stop(proc)
            if want("proxy_log"):
                proc, port, sport, pport = self.nginx(log=True)
                record("proxy_log", wrk(url(pport)))
                self.p.stop(proc)
            if want("varnish"):
                proc, port = self.varnish()
                record("varnish", wrk(url(port)))
                self.p.stop(proc)
            for local in (False, True):
                for log in (False, True):
                    key = "ug%s%s" % ("_local" if local else "", "_log" if log else "")
                    if not want(key):
                        continue
                    proc, port, _ = self.usergate(local=local, log=log)
                    record(key, wrk(url(port), "Authorization: " + AUTH))
                    self.p.stop(proc)
        labels = [("ret", "nginx return 200 (ceiling)"), ("static", "nginx static file"),
                  ("proxy", "nginx proxy_cache, log off"), ("proxy_log", "nginx proxy_cache, log on"),
                  ("varnish", "varnish"), ("ug", "usergate hit, Redis only, log off"),
                  ("ug_log", "usergate hit, Redis only, log on"),
                  ("ug_local", "usergate hit, local tier, log off"),
                  ("ug_local_log", "usergate hit, local tier, log on")]
        out = {}
        for key, label in labels:
            if key in runs:
                rs = sorted(runs[key], key=lambda r: r["rps"])
                out[key] = self.row(label, rs[len(rs) // 2])
        if only:
            return out
        print("== ratios (same run)")
        ratios = [
            ("usergate Redis-only / nginx proxy_cache, logs off", out["ug"]["rps"] / out["proxy"]["rps"]),
            ("usergate Redis-only / nginx proxy_cache, logs on", out["ug_log"]["rps"] / out["proxy_log"]["rps"]),
            ("usergate Redis-only / varnish", out["ug"]["rps"] / out["varnish"]["rps"]),
            ("usergate local tier / nginx return", out["ug_local"]["rps"] / out["ret"]["rps"]),
            ("usergate local tier / nginx static file", out["ug_local"]["rps"] / out["static"]["rps"]),
            ("usergate access log on / off (Redis only)", out["ug_log"]["rps"] / out["ug"]["rps"]),
            ("usergate access log on / off (local tier)", out["ug_local_log"]["rps"] / out["ug_local"]["rps"]),
            ("p99 usergate Redis-only / nginx proxy_cache, logs off", out["ug"]["p99"] / out["proxy"]["p99"]),
        ]
        for label, v in ratios:
            print("%-56s %.2fx" % (label, v))
        return out

    def miss_path(self):
        print("== miss path", flush=True)
        proc, port, _ = self.usergate()
        # 1,000 concurrent requests for one cold user: one upstream request.
        c = http.client.HTTPConnection("127.0.0.1", self.mport)
        c.request("POST", "/_mock/users", body=json.dumps({"identity": "cold", "service": SERVICE}))
        assert c.getresponse().status == 201
        cold = "/v1/Services/%s/Users/cold" % SERVICE
        req = ("GET %s HTTP/1.1\r\nHost: b\r\nAuthorization: %s\r\n\r\n" % (cold, AUTH)).encode()
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(1000)]
        for s in socks:
            s.sendall(req)
        ok = 0
        for s in socks:
            s.settimeout(20)
            data = b""
            while b"\r\n\r\n" not in data:
                data += s.recv(65536)
            ok += data.startswith(b"HTTP/1.1 200")
            s.close()
        upstream = len(self.mock_requests(cold))
        print("1,000 concurrent requests for one cold user: %d answered 200, %d upstream request%s"
              % (ok, upstream, "" if upstream == 1 else "s"))
        # What usergate adds to the upstream's latency: cold fetches of
        # distinct users through usergate against the same fetches direct.
        n = 300
        for i in range(n):
            c = http.client.HTTPConnection("127.0.0.1", self.mport)
            c.request("POST", "/_mock/users", body=json.dumps({"identity": "m%d" % i,
                                                               "service": SERVICE}))
            c.getresponse().read()
        direct, via = [], []
        dc = http.client.HTTPConnection("127.0.0.1", self.mport)
        vc = http.client.HTTPConnection("127.0.0.1", port)
        for i in range(n):
            p = "/v1/Services/%s/Users/m%d" % (SERVICE, i)
            t = time.perf_counter()
            dc.request("GET", p + "?d=1", headers={"Authorization": UPSTREAM_AUTH})
            dc.getresponse().read()
            direct.append(time.perf_counter() - t)
            t = time.perf_counter()
            vc.request("GET", p, headers={"Authorization": AUTH})
            r = vc.getresponse()
            r.read()
            assert r.getheader("X-Cache") == "MISS", r.getheaders()
            via.append(time.perf_counter() - t)
        direct.sort()
        via.sort()
        print("cold fetch p50: direct to the upstream %.2f ms, through usergate %.2f ms: "
              "usergate adds %.2f ms" % (direct[n // 2] * 1000, via[n // 2] * 1000,
                                         (via[n // 2] - direct[n // 2]) * 1000))
        # A 90/10 hit/miss mix (misses on users that do not exist: the mock
        # answers 404, usergate caches it, so each miss is a new name).
        script = os.path.join(self.work, "mix.lua")
        with open(script, "w") as f:
            f.write("""counter = 0
request = function()
  counter = counter + 1
  local path = "%s"
  if counter %% 10 == 0 then path = "/v1/Services/%s/Users/x" .. math.random(1, 1000000000) end
  return wrk.format("GET", path, {["Authorization"] = "%s"})
end
""" % (PATH, SERVICE, AUTH))
        r = wrk("http://127.0.0.1:%d%s" % (port, PATH), script=script)
        print("90/10 hit/miss mix: %.0f req/s, p50 %.2f ms, p99 %.2f ms "
              "(misses go to the Python mock, which bounds this)" % (r["rps"], r["p50"], r["p99"]))
        self.p.stop(proc)

    def idle_connections(self, n=10000):
        print("== %d idle keep-alive connections" % n, flush=True)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        err = open(os.path.join(self.work, "idle.log"), "wb")
        proc, port, admin = self.usergate(stderr=err)
        time.sleep(0.5)
        before = rss_kb(proc.pid)
        req = ("GET %s HTTP/1.1\r\nHost: b\r\nAuthorization: %s\r\n\r\n" % (PATH, AUTH)).encode()
        socks = []
        try:
            for i in range(n):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(req)
                socks.append(s)
                if len(socks) % 500 == 0:
                    self._drain(socks[-500:])
            if len(socks) % 500:
                self._drain(socks[-(len(socks) % 500):])
            time.sleep(1)
            after = rss_kb(proc.pid)
            with open("/proc/%d/limits" % proc.pid) as f:
                nofile = re.search(r"Max open files\s+(\d+)", f.read()).group(1)
            st, _, body = get(admin, "/metrics")
            held = re.search(r"^usergate_connections (\d+)", body.decode(), re.M)
            print("held %s connections; RSS %.1f MB -> %.1f MB: %.1f KiB per connection"
                  % (held.group(1) if held else "?", before / 1024, after / 1024,
                     (after - before) / n))
        finally:
            for s in socks:
                s.close()
            self.p.stop(proc)
        print("RLIMIT_NOFILE of usergate (raised at start to the hard limit): %s" % nofile)

    @staticmethod
    def _drain(socks):
        for s in socks:
            s.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                data += s.recv(65536)

    def profile(self, n=20000):
        """Instructions and allocations per hit (valgrind), usergate against
        nginx on the same request: (run with n hits - run with 0) / n."""
        print("== per hit, under valgrind (%d hits, keep-alive, one connection)" % n, flush=True)

        def drive(port, count, header):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for _ in range(count):
                c.request("GET", PATH, headers=header)
                r = c.getresponse()
                r.read()
                assert r.status == 200
            c.close()

        def measure(start, header, tool):
            vals = []
            for count in (0, n):
                out = os.path.join(self.work, "vg-%s-%d-%d" % (tool, count, time.monotonic_ns()))
                wrapper = ["valgrind", "--tool=%s" % tool, "--log-file=" + out]
                if tool == "callgrind":
                    wrapper += ["--callgrind-out-file=" + out + ".cg"]
                proc, port = start(wrapper)
                drive(port, count, header)
                proc.terminate()
                proc.wait(60)
                with open(out) as f:
                    text = f.read()
                if tool == "callgrind":
                    vals.append(int(re.search(r"Collected : (\d+)", text).group(1)))
                else:
                    vals.append(int(re.search(r"total heap usage: ([\d,]+) allocs",
                                              text).group(1).replace(",", "")))
            return (vals[1] - vals[0]) / n

        def ug(local):
            def start(wrapper):
                proc, port, _ = self.usergate(local=local, wrapper=wrapper)
                return proc, port
            return start

        def ngx(kind):
            def start(wrapper):
                root = os.path.join(self.work, "vg-nginx-%d" % time.monotonic_ns())
                os.makedirs(os.path.join(root, "cache"))
                port = free_port()
                loc = ("default_type application/json; return 200 '%s';"
                       % self.body.decode().replace("\\", "\\\\").replace("'", "\\'")
                       if kind == "return" else
                       'proxy_pass http://127.0.0.1:%d; proxy_http_version 1.1; '
                       'proxy_set_header Connection ""; proxy_set_header Authorization "%s"; '
                       'proxy_cache users; proxy_cache_valid 200 1h; '
                       'proxy_ignore_headers Set-Cookie Cache-Control Expires;'
                       % (self.mport, UPSTREAM_AUTH))
                conf = os.path.join(root, "nginx.conf")
                with open(conf, "w") as f:
                    f.write("worker_processes 1; daemon off; master_process off; "
                            "pid %s/pid; error_log %s/error.log; events {} http { access_log off; "
                            "proxy_cache_path %s/cache keys_zone=users:1m; server { listen "
                            "127.0.0.1:%d; location / { %s } } }" % (root, root, root, port, loc))
                os.chmod(root, 0o777)
                os.chmod(os.path.join(root, "cache"), 0o777)
                proc = self.p.start(pinned(SERVER_CPU, wrapper + ["nginx", "-c", conf, "-p", root]))
                wait_port(port, 60)
                get(port, PATH)
                return proc, port
            return start

        hdr = {"Authorization": AUTH}
        rows = [("usergate hit, Redis only", ug(False), hdr),
                ("usergate hit, local tier", ug(True), hdr),
                ("nginx proxy_cache hit", ngx("proxy"), {}),
                ("nginx return 200", ngx("return"), {})]
        for label, start, header in rows:
            ins = measure(start, header, "callgrind")
            allocs = measure(start, header, "memcheck")
            print("%-30s %8.0f instructions  %5.1f allocations" % (label, ins, allocs), flush=True)

    def scaling(self):
        """workers = 1 and 2, unpinned (server and wrk share both CPUs), local
        tier and Redis only: what a second worker buys on this machine."""
        global SERVER_CPU, CLIENT_CPU
        saved = SERVER_CPU, CLIENT_CPU
        SERVER_CPU = CLIENT_CPU = "0,1"
        print("== workers, unpinned (wrk -t2 -c128 and the server share both CPUs)", flush=True)
        try:
            for local in (False, True):
                res = {}
                for workers in (1, 2):
                    proc, port, _ = self.usergate(local=local, workers=workers)
                    argv = ["wrk", "-t2", "-c128", "-d%ds" % SECS, "--latency", "-H",
                            "Authorization: " + AUTH, "http://127.0.0.1:%d%s" % (port, PATH)]
                    out = subprocess.run(argv, capture_output=True, text=True).stdout
                    res[workers] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
                    self.p.stop(proc)
                print("%s: workers=1 %.0f req/s, workers=2 %.0f req/s (%.2fx)" % (
                    "local tier" if local else "Redis only", res[1], res[2], res[2] / res[1]))
        finally:
            SERVER_CPU, CLIENT_CPU = saved

    def cluster(self):
        """Hits by identity and by SID, on a three-master Redis Cluster and on
        one Redis: on a cluster a SID costs a second round trip (its alias
        lives in the SID's slot, the user's keys in the identity's slot)."""
        print("== Redis Cluster: three masters (pinned with the server) against one Redis",
              flush=True)
        ports = []
        while len(ports) < 3:
            p = free_port()
            if p + 10000 < 65536 and p not in ports:
                try:
                    with socket.socket() as s:
                        s.bind(("127.0.0.1", p + 10000))
                    ports.append(p)
                except OSError:
                    pass
        for p in ports:
            d = os.path.join(self.work, "cluster-%d" % p)
            os.makedirs(d)
            self.p.start(pinned(SERVER_CPU, [
                "redis-server", "--port", str(p), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", d, "--cluster-enabled", "yes"]))
        for p in ports:
            wait_port(p)
        subprocess.run(["redis-cli", "--cluster", "create"] + ["127.0.0.1:%d" % p for p in ports]
                       + ["--cluster-yes"], check=True, capture_output=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = subprocess.run(["redis-cli", "-p", str(ports[0]), "CLUSTER", "INFO"],
                                 capture_output=True, text=True).stdout
            if "cluster_state:ok" in out:
                break
            time.sleep(0.2)
        sid = json.loads(self.body)["sid"]
        paths = {"identity": PATH, "SID": "/v1/Services/%s/Users/%s" % (SERVICE, sid)}
        res = {}
        for mode, extra in (("one Redis", ""), ("cluster", "[redis]\ncluster = %s\n" % ", ".join(
                "127.0.0.1:%d" % p for p in ports))):
            proc, port, _ = self.usergate(extra=extra)
            for by, path in paths.items():
                for _ in range(2):
                    get(port, path, {"Authorization": AUTH})
                r = wrk("http://127.0.0.1:%d%s" % (port, path), "Authorization: " + AUTH)
                res[mode, by] = r
                self.row("usergate hit by %s, %s" % (by, mode), r)
            self.p.stop(proc)
        for by in paths:
            print("%-56s %.2fx" % ("cluster / one Redis, hit by %s" % by,
                                   res["cluster", by]["rps"] / res["one Redis", by]["rps"]))
        for mode in ("one Redis", "cluster"):
            print("%-56s %.2fx" % ("by SID / by identity, %s" % mode,
                                   res[mode, "SID"]["rps"] / res[mode, "identity"]["rps"]))

    def close(self):
        self.p.stop_all()
        shutil.rmtree(self.work, ignore_errors=True)


def main():
    what = sys.argv[1:] or ["hits", "miss", "idle", "scaling", "profile", "cluster"]
    b = Bench()
    try:
        b.setup()
        print("usergate %s; %s; %d CPUs" % (
            subprocess.run([BIN, "-V"], capture_output=True, text=True).stdout.split("\n")[0],
            open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t"),
            os.cpu_count()), flush=True)
        if "hits" in what:
            b.hits()
        if "miss" in what:
            b.miss_path()
        if "idle" in what:
            b.idle_connections()
        if "scaling" in what:
            b.scaling()
        if "profile" in what:
            b.profile()
        if "cluster" in what:
            b.cluster()
    finally:
        b.close()


if __name__ == "__main__":
    main()
