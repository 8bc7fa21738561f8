"""Fixtures for the usergate integration suite: the real usergate binary, a
real redis-server and the in-process mock Twilio, all on loopback.

Environment: USERGATE_BIN (default <repo>/src/usergate), REDIS_SERVER (default
redis-server on PATH), USERGATE_SRCDIR (unused here; automake passes it).
"""

import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

import pytest

from mock_twilio import MockTwilio

HERE = os.path.dirname(os.path.abspath(__file__))
USERGATE_BIN = os.environ.get("USERGATE_BIN") or os.path.join(HERE, "..", "..", "src", "usergate")
# A command the gateway runs under (make check-valgrind sets valgrind here).
USERGATE_WRAPPER = os.environ.get("USERGATE_WRAPPER", "").split()
REDIS_SERVER = os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or "redis-server"

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "tok-" + "5e" * 14
SERVICE = "IS" + "a1" * 16          # the account's default service
OTHER_SERVICE = "IS" + "b2" * 16
THIRD_SERVICE = "IS" + "c3" * 16

CLIENT = ("app", "app-secret-1")     # may do everything
KEY_PREFIX = "ugtest:"

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer", "ERROR: MemorySanitizer",
                     "ERROR SUMMARY: [1-9]", "definitely lost: [1-9]")

# Under valgrind (make check-valgrind) everything the gateway does is ~30x slower.
SLOW = os.environ.get("USERGATE_SLOW") == "1"
# Seconds; nothing in this suite may hang (make soak raises it for long histories).
TEST_TIMEOUT = int(os.environ.get("USERGATE_TEST_TIMEOUT") or (300 if SLOW else 75))

# usergate refuses files holding secrets that others can read; the suite
# creates its configs and secret files the way a deployment would (0600).
# Tests of that rule chmod their files explicitly.
os.umask(0o077)


# --------------------------------------------------------------------------- utilities

def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_EPHEMERAL_LOW = _ephemeral_low()
_handed_out = set()


def free_port(offset=None):
    """A loopback port to listen on, below the kernel's ephemeral range: the
    suite opens thousands of client connections (hostile and slowloris
    tests), and a port handed out from that range can meanwhile be some
    connection's local port, making the listener fail with EADDRINUSE.
    offset: port + offset must be free too (a cluster node's bus port)."""
    import random
    top = max(10001, _EPHEMERAL_LOW - (offset or 0))
    for _ in range(1000):
        port = random.randrange(10000, top)
        pair = [port] + ([port + offset] if offset else [])
        if any(p in _handed_out for p in pair):
            continue
        try:
            for p in pair:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        _handed_out.update(pair)
        return port
    raise RuntimeError("no free loopback port below %d" % _EPHEMERAL_LOW)


def closed_port():
    """A loopback port with nothing listening on it (connections are refused)."""
    return free_port()


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def wait_until(pred, timeout=10.0, interval=0.05, what="condition"):
    """Poll pred() until it returns a truthy value; return it or fail."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    pytest.fail("timed out after %.1fs waiting for %s (last: %r)" % (timeout, what, last))


def parallel(n, fn, join_timeout=60):
    """Run fn(0..n-1) on n threads released together; results (or the
    exception each raised) in order."""
    import threading
    out = [None] * n
    start = threading.Barrier(n)

    def run(i):
        start.wait()
        try:
            out[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - the caller inspects it
            out[i] = e

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(join_timeout)
    return out


def form(**fields):
    """application/x-www-form-urlencoded the way twilio-node does it (%20 for space)."""
    return urllib.parse.urlencode(fields, quote_via=urllib.parse.quote)


class Resp:
    """An HTTP response: status, headers (case-insensitive), body bytes, json."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name, default=None):
        return self.headers.get(name, default)

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    @property
    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def xcache(self):
        return self.headers.get("X-Cache")

    def __iter__(self):  # status, headers, body_json_or_text = resp
        j = self.json
        return iter((self.status, self.headers, j if j is not None else self.text))

    def __repr__(self):
        hdrs = "; ".join("%s: %s" % kv for kv in self.headers.items())
        return "<HTTP %s [%s] %s>" % (self.status, hdrs, self.text[:600])


def http_request(port, method, path, body=None, headers=None, auth=CLIENT, timeout=10.0,
                 host="127.0.0.1"):
    """One request on a fresh connection. auth: (key, secret), a raw header
    string, or None. body: bytes/str, or a dict (form-encoded)."""
    hdrs = {}
    if isinstance(body, dict):
        body = form(**body)
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    if isinstance(body, str):
        body = body.encode()
    if isinstance(auth, tuple):
        hdrs["Authorization"] = basic(*auth)
    elif isinstance(auth, str):
        hdrs["Authorization"] = auth
    hdrs.update(headers or {})
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
        for k, v in hdrs.items():
            conn.putheader(k, v)
        if body is not None and "Content-Length" not in hdrs:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        return Resp(r.status, r.headers, data)
    finally:
        conn.close()


def assert_twilio_error(resp, status=None, code=None):
    """resp is a usergate/Twilio-shaped error: JSON with the four fields."""
    assert resp.status >= 400, resp
    if status is not None:
        assert resp.status == status, resp
    ctype = resp.header("Content-Type", "")
    assert ctype.split(";")[0].strip() == "application/json", resp
    j = resp.json
    assert isinstance(j, dict), resp
    for field in ("code", "message", "more_info", "status"):
        assert field in j, "missing %r in %r" % (field, resp)
    assert isinstance(j["code"], int) and isinstance(j["status"], int), resp
    assert isinstance(j["message"], str) and j["message"], resp
    assert j["status"] == resp.status, resp
    assert j["more_info"] == "https://www.twilio.com/docs/errors/%d" % j["code"], resp
    if code is not None:
        assert j["code"] == code, resp
    return j


FAMILIES = ("v1", "v1s", "v2")


def users_path(family, service=SERVICE):
    """Collection path of a family: /v1/Users, /v1/Services/IS…/Users, /v2/Services/IS…/Users."""
    if family == "v1":
        return "/v1/Users"
    return "/%s/Services/%s/Users" % ("v2" if family == "v2" else "v1", service)


def user_path(family, user, service=SERVICE):
    """user is put in the path as given (callers percent-encode if they want)."""
    return users_path(family, service) + "/" + user


def q(s):
    """Percent-encode every reserved byte of s (UTF-8)."""
    return urllib.parse.quote(s, safe="")


STORE_SETTLE = 0.05  # the cache write after a MISS may finish just after the reply


def fetch(gw, path, expect_status=200, expect_cache=None, **kw):
    """GET through the gateway and check status (and X-Cache when given)."""
    r = gw.get(path, **kw)
    assert r.status == expect_status, (path, r)
    if expect_cache is not None:
        assert r.xcache == expect_cache, (path, r)
    if r.xcache == "MISS":
        time.sleep(STORE_SETTLE)
    return r


def upstream_fetches(mock, path_prefix):
    """Upstream GETs of exactly this path (compared percent-decoded, query ignored)."""
    want = urllib.parse.unquote(path_prefix)
    return [r for r in mock.requests(method="GET")
            if urllib.parse.unquote(r["path"].split("?")[0]) == want]


# --------------------------------------------------------------------------- Redis keys

def _siphash24(k0, k1, data):
    """SipHash-2-4 (Aumasson & Bernstein), written from the paper for tests."""
    M = (1 << 64) - 1

    def rotl(x, b):
        return ((x << b) | (x >> (64 - b))) & M

    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261,
         k1 ^ 0x7465646279746573]

    def rnd():
        v[0] = (v[0] + v[1]) & M; v[1] = rotl(v[1], 13); v[1] ^= v[0]; v[0] = rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & M; v[3] = rotl(v[3], 16); v[3] ^= v[2]
        v[0] = (v[0] + v[3]) & M; v[3] = rotl(v[3], 21); v[3] ^= v[0]
        v[2] = (v[2] + v[1]) & M; v[1] = rotl(v[1], 17); v[1] ^= v[2]; v[2] = rotl(v[2], 32)

    n = len(data)
    tail = data[n - n % 8:] + b"\0" * (7 - n % 8) + bytes([n & 0xFF])
    for i in range(0, n - n % 8, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v[3] ^= m; rnd(); rnd(); v[0] ^= m
    m = int.from_bytes(tail, "little")
    v[3] ^= m; rnd(); rnd(); v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(4):
        rnd()
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def user_key(kind, name, family=None, service=SERVICE, account=ACCOUNT, prefix=KEY_PREFIX):
    """A usergate Redis key as README documents it:
    <prefix><kind>:{<tag>}:<account>:<service>:[<family>:]<name>, where tag is
    the SipHash-2-4 (key "usergate" "slot-tag") of account NUL service NUL name
    in 16 hex digits. kind: u entry, v version, h hold, l lock, a alias."""
    if isinstance(name, str):
        name = name.encode()
    tag = _siphash24(0x7573657267617465, 0x736C6F742D746167,
                     account.encode() + b"\0" + service.encode() + b"\0" + name)
    head = "%s%s:{%016x}:%s:%s:" % (prefix, kind, tag, account, service)
    if family:
        head += family + ":"
    return head.encode() + name


# --------------------------------------------------------------------------- raw HTTP

class RawConn:
    """One client connection spoken byte by byte (framing tests, hostile clients)."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed; buffered: %r" % self.buf[:200])
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, head=False):
        """-> (status, {lower-name: value}, body, version). 1xx come back as is."""
        status_line = self._line().decode("latin-1")
        version, status = status_line.split(" ", 2)[:2]
        headers = {}
        while True:
            line = self._line()
            if not line:
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        status = int(status)
        if status < 200 or status in (204, 304) or head:
            return status, headers, b"", version
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exact(size)
                self._line()
            return status, headers, body, version
        if "content-length" in headers:
            return status, headers, self._exact(int(headers["content-length"])), version
        # close-delimited
        try:
            while True:
                self._fill()
        except EOFError:
            pass
        body, self.buf = self.buf, b""
        return status, headers, body, version

    def closed_by_peer(self, timeout=3.0):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()



# --------------------------------------------------------------------------- metrics

_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*')


def parse_metrics(text):
    """Prometheus text -> {(name, frozenset(labels.items())): float}."""
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line.strip())
        assert m, "unparseable metrics line: %r" % line
        labels = {}
        if m.group(3):
            pos = 0
            s = m.group(3)
            while pos < len(s):
                lm = _LABEL_RE.match(s, pos)
                assert lm, "bad labels in %r" % line
                labels[lm.group(1)] = re.sub(r'\\(.)', lambda x: {"n": "\n"}.get(x.group(1),
                                                                                 x.group(1)),
                                             lm.group(2))
                pos = lm.end()
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return out


class Metrics(dict):
    def get_value(self, name, default=0.0, **labels):
        return self.get((name, frozenset(labels.items())), default)

    def find(self, name, **labels):
        """All samples of name whose labels include the given ones."""
        want = set(labels.items())
        return {k: v for k, v in self.items() if k[0] == name and want <= set(k[1])}


# --------------------------------------------------------------------------- redis

def _resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def _resp_read(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError("redis error: " + rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise RuntimeError("bad RESP reply %r" % line)


def redis_command(port, *args, timeout=2.0, password=None):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with s.makefile("rb") as f:
            if password is not None:
                s.sendall(_resp_encode(("AUTH", password)))
                assert _resp_read(f) == "OK"
            s.sendall(_resp_encode(args))
            return _resp_read(f)


class RedisServer:
    def __init__(self, binary, workdir, args=(), password=None):
        """args: more redis-server options (e.g. ("--replicaof", "127.0.0.1 6379"));
        password: the requirepass this server was given, for cmd()."""
        self.binary = binary
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = free_port()
        self.proc = None
        self.paused = False
        self.args = list(args)
        self.password = password

    def start(self, timeout=10.0):
        assert self.proc is None, "redis already running"
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
             "--logfile", os.path.join(self.dir, "redis.log")] + self.args,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("redis-server exited with %s; log:\n%s"
                            % (self.proc.returncode, self.log()))
            try:
                if redis_command(self.port, "PING", timeout=0.5, password=self.password) == "PONG":
                    return
            except (OSError, ConnectionError, RuntimeError):
                pass
            time.sleep(0.02)
        pytest.fail("redis-server did not answer PING on port %d" % self.port)

    def stop(self):
        if self.proc is None:
            return
        if self.paused:
            self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def kill(self):
        """SIGKILL: no shutdown, and (no persistence) every key is lost."""
        self.proc.kill()
        self.proc.wait(5)
        self.proc = None
        self.paused = False

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def cmd(self, *args):
        return redis_command(self.port, *args, password=self.password)

    def keys(self, pattern="*"):
        return self.cmd("KEYS", pattern)

    def log(self):
        try:
            with open(os.path.join(self.dir, "redis.log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""


# --------------------------------------------------------------------------- Redis Sentinel

SENTINEL_MASTER = "usergate-main"


class Sentinels:
    """Three redis-server --sentinel processes watching one primary."""

    def __init__(self, workdir, master_port, password=None, master_password=None, n=3):
        self.password = password
        self.procs, self.ports, self.dirs = [], [], []
        for i in range(n):
            d = os.path.join(workdir, "sentinel%d" % i)
            os.makedirs(d, exist_ok=True)
            port = free_port()
            lines = ["port %d" % port, "bind 127.0.0.1", "daemonize no", "dir %s" % d,
                     "logfile %s" % os.path.join(d, "sentinel.log"),
                     "sentinel monitor %s 127.0.0.1 %d 2" % (SENTINEL_MASTER, master_port),
                     "sentinel down-after-milliseconds %s 1000" % SENTINEL_MASTER,
                     "sentinel failover-timeout %s 5000" % SENTINEL_MASTER,
                     "sentinel parallel-syncs %s 1" % SENTINEL_MASTER]
            if master_password:
                lines.append("sentinel auth-pass %s %s" % (SENTINEL_MASTER, master_password))
            if password:
                lines += ["requirepass %s" % password, "sentinel sentinel-pass %s" % password]
            conf = os.path.join(d, "sentinel.conf")
            with open(conf, "w") as f:
                f.write("\n".join(lines) + "\n")
            self.procs.append(subprocess.Popen([REDIS_SERVER, conf, "--sentinel"],
                                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
            self.ports.append(port)
            self.dirs.append(d)

    def cmd(self, i, *args):
        return redis_command(self.ports[i], *args, password=self.password)

    def primary_port(self, i=0):
        addr = self.cmd(i, "SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER)
        return int(addr[1]) if addr else None

    def ready(self):
        """Every sentinel knows the replica and the other sentinels (quorum)."""
        def ok():
            try:
                for i in range(len(self.ports)):
                    if self.cmd(i, "SENTINEL", "CKQUORUM", SENTINEL_MASTER).find("OK") != 0:
                        return False
                    reps = self.cmd(i, "SENTINEL", "replicas", SENTINEL_MASTER)
                    others = self.cmd(i, "SENTINEL", "sentinels", SENTINEL_MASTER)
                    if len(reps) != 1 or len(others) != 2:
                        return False
                    flags = dict(zip(reps[0][::2], reps[0][1::2]))[b"flags"]
                    if flags != b"slave":
                        return False
                return True
            except (OSError, RuntimeError, ConnectionError):
                return False
        wait_until(ok, timeout=60, interval=0.2, what="sentinels agree on primary and replica")

    def failover(self, timeout=30.0):
        """SENTINEL FAILOVER, and wait until the sentinels name another primary."""
        before = self.primary_port()
        assert self.cmd(0, "SENTINEL", "FAILOVER", SENTINEL_MASTER) == "OK"
        wait_until(lambda: self.primary_port() not in (before, None), timeout=timeout,
                   interval=0.05, what="the sentinels promote the replica")

    def addresses(self):
        return ", ".join("127.0.0.1:%d" % p for p in self.ports)

    def logs(self):
        out = []
        for d in self.dirs:
            try:
                with open(os.path.join(d, "sentinel.log"), errors="replace") as f:
                    out.append(f.read()[-3000:])
            except OSError:
                pass
        return "\n".join(out)

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


@pytest.fixture
def sentinel_set(tmp_path, request):
    """(primary, replica, Sentinels): a primary, its replica and three
    sentinels; with AUTH everywhere when parametrized indirectly with True."""
    secured = getattr(request, "param", False)
    pw = "data-secret-1" if secured else None
    spw = "sentinel-secret-1" if secured else None
    auth = ["--requirepass", pw, "--masterauth", pw] if secured else []
    primary = RedisServer(REDIS_SERVER, str(tmp_path / "primary"), args=auth, password=pw)
    primary.start()
    replica = RedisServer(REDIS_SERVER, str(tmp_path / "replica"),
                          args=auth + ["--replicaof", "127.0.0.1", str(primary.port)],
                          password=pw)
    replica.start()
    sentinels = Sentinels(str(tmp_path), primary.port, password=spw, master_password=pw)
    try:
        sentinels.ready()
    except BaseException:
        print(sentinels.logs())
        sentinels.stop()
        replica.stop()
        primary.stop()
        raise
    yield primary, replica, sentinels
    sentinels.stop()
    replica.stop()
    primary.stop()


# --------------------------------------------------------------------------- Redis Cluster

REDIS_CLI = os.environ.get("REDIS_CLI") or shutil.which("redis-cli") or "redis-cli"


class RedisCluster:
    """Six cluster-enabled redis-servers made into three masters with a
    replica each by `redis-cli --cluster create`; node timeout 1 s."""

    def __init__(self, workdir, masters=3, replicas=1, password=None):
        self.nodes = []
        self.password = password
        auth = ["--requirepass", password, "--masterauth", password] if password else []
        for i in range(masters * (1 + replicas)):
            d = os.path.join(workdir, "node%d" % i)
            node = RedisServer(REDIS_SERVER, d, password=password, args=[
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "1000",
                # A replica may take over however long ago it last heard
                # its master (the test kills masters at any moment).
                "--cluster-replica-validity-factor", "0"] + auth)
            node.port = free_port(offset=10000)  # and the cluster bus on port + 10000
            self.nodes.append(node)
        try:
            for n in self.nodes:
                n.start()
            self.cli("--cluster", "create", *["127.0.0.1:%d" % n.port for n in self.nodes],
                     "--cluster-replicas", str(replicas), "--cluster-yes")
            self.wait_ok()
        except BaseException:
            self.stop()  # no node outlives a failed set-up
            raise

    def cli(self, *args, timeout=120):
        env = dict(os.environ, REDISCLI_AUTH=self.password) if self.password else None
        r = subprocess.run([REDIS_CLI] + list(args), stdin=subprocess.DEVNULL, env=env,
                           capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, (args, r.stdout[-3000:], r.stderr[-3000:])
        return r.stdout

    def live(self):
        return [n for n in self.nodes if n.proc is not None]

    def topology(self):
        """{node id: (RedisServer, role, [slot ranges])} as a live node sees it."""
        text = self.live()[0].cmd("CLUSTER", "NODES").decode()
        by_port = {n.port: n for n in self.nodes}
        out = {}
        for line in text.splitlines():
            f = line.split()
            port = int(f[1].split("@")[0].rsplit(":", 1)[1])
            role = "master" if "master" in f[2] else "replica"
            if "fail" in f[2]:
                role += ",fail"
            out[f[0]] = (by_port.get(port), role, f[8:])
        return out

    def masters(self):
        return [(nid, srv) for nid, (srv, role, slots) in self.topology().items()
                if role == "master" and slots]

    def wait_ok(self, timeout=60):
        def ok():
            try:
                for n in self.live():
                    info = n.cmd("CLUSTER", "INFO").decode()
                    if "cluster_state:ok" not in info:
                        return False
                return len(self.masters()) >= 3
            except (OSError, RuntimeError, ConnectionError):
                return False
        wait_until(ok, timeout=timeout, interval=0.1, what="the cluster to be ok")

    def master_of(self, key):
        slot = self.live()[0].cmd("CLUSTER", "KEYSLOT", key)
        for nid, (srv, role, ranges) in self.topology().items():
            if not role.startswith("master"):
                continue
            for rg in ranges:
                if rg.startswith("["):
                    continue
                a, _, b = rg.partition("-")
                if int(a) <= slot <= int(b or a):
                    return nid, srv
        return None, None

    def reshard(self, src_id, dst_id, slots):
        self.cli("--cluster", "reshard", "127.0.0.1:%d" % self.live()[0].port, "--cluster-from",
                 src_id, "--cluster-to", dst_id, "--cluster-slots", str(slots), "--cluster-yes",
                 timeout=300)

    def seeds(self, n=2):
        return ", ".join("127.0.0.1:%d" % s.port for s in self.live()[:n])

    def stop(self):
        for n in self.nodes:
            n.stop()


@pytest.fixture
def redis_cluster(tmp_path, request):
    """Three masters with a replica each; with AUTH on every node when
    parametrized indirectly with a password."""
    c = RedisCluster(str(tmp_path / "cluster"), password=getattr(request, "param", None))
    yield c
    c.stop()


# --------------------------------------------------------------------------- gateway

def render_config(sections):
    """sections: {section: {key: value}}; a None value omits the key."""
    lines = []
    for name, keys in sections.items():
        lines.append("[%s]" % name)
        for k, v in keys.items():
            if v is not None:
                lines.append("%s = %s" % (k, v))
        lines.append("")
    return "\n".join(lines)


def base_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TWILIO_") and k not in ("CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET",
                                                         "LISTEN_FDS", "LISTEN_PID")}
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    env.update(extra or {})
    return env


def require_binary():
    if not (os.path.isfile(USERGATE_BIN) and os.access(USERGATE_BIN, os.X_OK)):
        pytest.fail("usergate binary not found at %s (set USERGATE_BIN)" % USERGATE_BIN)


class Gateway:
    def __init__(self, workdir, sections, env=None, name="usergate"):
        self.workdir = workdir
        self.sections = sections
        self.conf = os.path.join(workdir, name + ".conf")
        self.stderr_path = os.path.join(workdir, name + ".stderr")
        self.port = int(sections["server"]["listen"].rsplit(":", 1)[1])
        self.admin_port = int(sections["server"]["admin_listen"].rsplit(":", 1)[1])
        self.env = base_env(env)
        self.proc = None
        self.returncode = None
        with open(self.conf, "w") as f:
            f.write(render_config(sections))

    def start(self, timeout=15.0):
        require_binary()
        if SLOW:
            timeout *= 4
        self._err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(USERGATE_WRAPPER + [USERGATE_BIN, "-c", self.conf],
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._err, stderr=self._err, env=self.env,
                                     cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                pytest.fail("usergate exited during start-up with %s; stderr:\n%s"
                            % (self.proc.returncode, self.stderr()))
            try:
                if http_request(self.admin_port, "GET", "/healthz", auth=None,
                                timeout=1).status == 200:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        pytest.fail("usergate did not become healthy within %.0fs; stderr:\n%s"
                    % (timeout, self.stderr()))

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout=15.0):
        """SIGTERM and wait; returns the exit status (None if never started)."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.returncode = "hung"
        if self.returncode != "hung":
            self.returncode = self.proc.returncode
        self.proc = None
        self._err.close()
        return self.returncode

    def problems(self):
        """Why this run counts as a crash (empty when clean)."""
        out = []
        if self.returncode not in (0, None):
            out.append("usergate exit status %s after SIGTERM" % self.returncode)
        err = self.stderr()
        for marker in SANITIZER_MARKERS:
            if re.search(marker, err):
                out.append("sanitizer report in stderr (%r)" % marker)
        return out

    # -- client helpers
    def request(self, method, path, body=None, headers=None, auth=CLIENT, timeout=10.0):
        return http_request(self.port, method, path, body, headers, auth, timeout)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def admin(self, path, method="GET", timeout=5.0):
        return http_request(self.admin_port, method, path, auth=None, timeout=timeout)

    def metrics(self):
        r = self.admin("/metrics")
        assert r.status == 200, r
        return Metrics(parse_metrics(r.text))


def default_sections(mock_port, redis_port, client_port=None, admin_port=None):
    return {
        "server": {
            "listen": "127.0.0.1:%d" % (client_port or free_port()),
            "admin_listen": "127.0.0.1:%d" % (admin_port or free_port()),
            "workers": "1",
            # Every test client is 127.0.0.1: tests that send bad credentials
            # on purpose would trip the per-address budget. test_security.py
            # sets it explicitly.
            "auth_failures_per_minute": "0",
        },
        "upstream": {
            "conversations_url": "http://127.0.0.1:%d" % mock_port,
            "chat_url": "http://127.0.0.1:%d" % mock_port,
            "account_sid": ACCOUNT,
            "auth_token": TOKEN,
            "default_service_sid": SERVICE,
            "connect_timeout_ms": "1000",
            "timeout_ms": "3000",
        },
        "redis": {
            "address": "127.0.0.1:%d" % redis_port,
            "key_prefix": KEY_PREFIX,
            "timeout_ms": "250",
        },
        "cache": {"ttl": "300", "negative_ttl": "30"},
        "client app": {
            "key": CLIENT[0],
            "secret": CLIENT[1],
            "services": "*",
            "allow": "fetch, create, update, delete, list",
        },
    }


def merge_sections(base, overrides):
    for sec, keys in (overrides or {}).items():
        if keys is None:
            base.pop(sec, None)
            continue
        base.setdefault(sec, {}).update(keys)
    return base


# --------------------------------------------------------------------------- fixtures

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for gw in getattr(item, "_usergate_gateways", []):
            rep.sections.append(("usergate stderr (%s)" % gw.conf, gw.stderr()[-12000:]))


@pytest.fixture(autouse=True)
def _deadline():
    """No test may hang: SIGALRM interrupts whatever blocks."""
    def on_alarm(signum, frame):
        raise TimeoutError("test exceeded %d s" % TEST_TIMEOUT)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def mock():
    m = MockTwilio(ACCOUNT, TOKEN, SERVICE)
    m.start()
    yield m
    m.stop()


@pytest.fixture
def redis(tmp_path):
    r = RedisServer(REDIS_SERVER, str(tmp_path / "redis"))
    r.start()
    yield r
    r.stop()


@pytest.fixture
def gateway_factory(request, tmp_path, mock, redis):
    """gateway_factory(overrides={section: {key: value-or-None}}, env={}, start=True)
    -> started Gateway. Default config: mock upstream, real redis, client `app`
    allowed everything, default_service_sid = SERVICE."""
    started = []
    request.node._usergate_gateways = started

    def make(overrides=None, env=None, start=True):
        sections = merge_sections(default_sections(mock.port, redis.port), overrides)
        gw = Gateway(str(tmp_path), sections, env=env, name="usergate%d" % len(started))
        started.append(gw)
        if start:
            gw.start()
        return gw

    yield make
    problems = []
    for gw in started:
        gw.stop()
        for p in gw.problems():
            problems.append("%s: %s\nstderr tail:\n%s" % (gw.conf, p, gw.stderr()[-6000:]))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def gateway(gateway_factory):
    """A started gateway with the default configuration."""
    return gateway_factory()
