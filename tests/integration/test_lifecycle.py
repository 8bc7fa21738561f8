"""The daemon's life under an operator: sd_notify on a NOTIFY_SOCKET the test
provides, SIGHUP reloads under load (good and broken files), SIGTERM draining
in-flight requests, a second signal, and the access log."""

import json
import os
import re
import signal
import socket
import threading
import time

import pytest

from conftest import (CLIENT, SERVICE, assert_twilio_error, fetch, render_config, q, user_path,
                      wait_until)

OTHER = ("other", "other-secret-1")


def _with_other_client(extra=None):
    o = {"client other": {"key": OTHER[0], "secret": OTHER[1], "services": "*",
                          "allow": "fetch"}}
    o.update(extra or {})
    return o


def _rewrite(gw, changes):
    for sec, keys in changes.items():
        gw.sections.setdefault(sec, {}).update(keys)
    with open(gw.conf, "w") as f:
        f.write(render_config(gw.sections))


class Loop:
    """A steady request loop on a few threads; records every outcome."""

    def __init__(self, gw, paths, threads=4):
        self.results, self.stop, self.gw, self.paths = [], threading.Event(), gw, paths
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, k):
        i = k
        while not self.stop.is_set():
            try:
                r = self.gw.get(self.paths[i % len(self.paths)], timeout=10)
                self.results.append(r.status)
            except OSError as e:
                self.results.append(repr(e))
            i += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(15)

    def failures(self):
        return [r for r in self.results if r != 200]


def test_sighup_under_load_changes_ttl_and_secret_without_failures(gateway_factory, mock):
    gw = gateway_factory(_with_other_client())
    for i in range(4):
        mock.add_user("load-%d" % i)
    mock.add_user("ttl-probe")
    paths = [user_path("v1s", "load-%d" % i) for i in range(4)]
    # some requests are always waiting on a slow upstream while we reload
    mock.fail(prefix=paths[0], method="GET", delay=0.3)
    assert gw.get(paths[1], auth=OTHER).status == 200
    with Loop(gw, paths) as loop:
        time.sleep(0.5)
        _rewrite(gw, {"cache": {"ttl": "1"},
                      "client other": {"secret": "other-secret-2"}})
        gw.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "configuration reloaded" in gw.stderr(), what="reload logged")
        time.sleep(0.5)
    assert len(loop.results) > 20
    assert not loop.failures(), loop.failures()[:5]
    # the new secret is in effect, the old one is not
    assert gw.get(paths[1], auth=("other", "other-secret-2")).status == 200
    assert_twilio_error(gw.get(paths[1], auth=OTHER), status=401)
    # the new TTL: a fresh entry is no longer fresh 1.3 s later
    probe = user_path("v2", "ttl-probe")
    fetch(gw, probe, expect_cache="MISS")
    fetch(gw, probe, expect_cache="HIT")
    time.sleep(1.3)
    assert gw.get(probe).xcache in ("MISS", "STALE")
    assert gw.metrics().get_value("usergate_config_reloads_total", result="ok") == 1
    mock.clear_failures()


def test_sighup_with_a_broken_file_keeps_serving(gateway_factory, mock):
    gw = gateway_factory()
    mock.add_user("steady")
    path = user_path("v1", "steady")
    with open(gw.conf, "a") as f:
        f.write("\n[cache]\nttl = forever\n[nonsense\n")
    with Loop(gw, [path]) as loop:
        time.sleep(0.2)
        gw.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "keeping the running configuration" in gw.stderr(),
                   what="reload failure logged")
        time.sleep(0.2)
    assert loop.results and not loop.failures(), loop.failures()[:5]
    err = gw.stderr()
    # every problem, with file:line
    assert re.search(re.escape(gw.conf) + r":\d+: .*ttl", err), err[-2000:]
    assert re.search(re.escape(gw.conf) + r":\d+: ", err)
    assert gw.metrics().get_value("usergate_config_reloads_total", result="failed") == 1
    assert gw.get(path).status == 200


def test_sighup_reports_keys_that_need_a_restart(gateway_factory, mock):
    gw = gateway_factory()
    _rewrite(gw, {"server": {"workers": "2"}})
    gw.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in gw.stderr(), what="reload")
    assert re.search(r"workers.*restart", gw.stderr()), gw.stderr()[-2000:]


def test_sigterm_finishes_in_flight_requests_and_exits_0(gateway_factory, mock):
    gw = gateway_factory({"server": {"shutdown_timeout_ms": "5000"}})
    for i in range(5):
        mock.add_user("slow-%d" % i)
    mock.fail(prefix="/v2/", method="GET", delay=1.0)
    out, lock = [], threading.Lock()

    def one(i):
        r = gw.get(user_path("v2", "slow-%d" % i), timeout=10)
        with lock:
            out.append(r.status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    wait_until(lambda: len(mock.requests("GET", "/v2/")) == 5, what="requests at upstream")
    t0 = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    with pytest.raises(OSError):  # no longer accepting
        socket.create_connection(("127.0.0.1", gw.port), timeout=1).close()
    for t in threads:
        t.join(10)
    assert sorted(out) == [200] * 5, out
    rc = gw.proc.wait(10)
    assert rc == 0
    assert time.monotonic() - t0 < 5
    assert "draining" in gw.stderr()


def test_second_signal_exits_at_once(gateway_factory, mock):
    gw = gateway_factory({"server": {"shutdown_timeout_ms": "30000"}})
    mock.add_user("stuck")
    mock.fail(prefix="/v1/Users/stuck", method="GET", delay=8)
    box = {}

    def stuck():
        try:
            box["r"] = gw.get(user_path("v1", "stuck"), timeout=15)
        except OSError as e:  # http.client errors are OSErrors or HTTPException
            box["e"] = e
        except Exception as e:  # noqa: BLE001 - RemoteDisconnected and friends
            box["e"] = e

    t = threading.Thread(target=stuck)
    t.start()
    wait_until(lambda: mock.requests("GET", "/v1/Users/stuck"), what="request at upstream")
    gw.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert gw.proc.poll() is None  # draining: waits for the stuck request
    t0 = time.monotonic()
    gw.proc.send_signal(signal.SIGINT)
    rc = gw.proc.wait(5)
    assert rc == 0 and time.monotonic() - t0 < 3
    assert "again: exiting now" in gw.stderr()
    t.join(15)
    assert "e" in box, box  # cut off, not answered: that is what "at once" means
    mock.clear_failures()


def _access_lines(gw, at_least=1):
    """The access lines so far, once there are at_least of them: a busy
    worker writes its log in batches, when its loop goes idle, so a line can
    land a moment after its answer."""
    def lines():
        return [l for l in gw.stderr().splitlines() if " access " in l or '"msg":"access"' in l]
    return wait_until(lambda: (lambda ls: ls if len(ls) >= at_least else None)(lines()),
                      timeout=5, what="%d access lines" % at_least)


_LOGFMT = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def _logfmt(line):
    body = line.split(" access ", 1)[1]
    return {k: v.strip('"') for k, v in _LOGFMT.findall(body)}


SECRET_ATTR = '{"ssn":"078-05-1120"}'


def test_access_log_hashes_identities_and_never_shows_attributes(gateway_factory, mock):
    a = gateway_factory()
    b = gateway_factory()
    ident = "alice.private@example.com"
    c = a.post(user_path("v1s", "")[:-1], {"Identity": ident, "Attributes": SECRET_ATTR})
    assert c.status == 201, c
    sid = c.json["sid"]
    fetch(a, user_path("v1s", q(ident)))
    fetch(b, user_path("v1s", q(ident)))
    fetch(a, user_path("v1s", sid))
    for gw in (a, b):
        err = gw.stderr()
        assert ident not in err and "078-05-1120" not in err and "ssn" not in err
    lines = [_logfmt(l) for l in _access_lines(a, 3)]
    assert len(lines) >= 3
    for f in lines:
        for k in ("id", "client", "method", "route", "service", "user", "status", "cache",
                  "upstream_status", "upstream_ms", "ms"):
            assert k in f, (k, f)
    by_ident = [f for f in lines if f["route"].endswith("/Users/{Sid}") and f["user"] != sid]
    assert by_ident and re.fullmatch(r"h:[0-9a-f]{16}", by_ident[0]["user"]), by_ident
    assert by_ident[0]["service"] == SERVICE and by_ident[0]["client"] == CLIENT[0]
    assert [f for f in lines if f["user"] == sid], "SIDs are logged as they are"
    # same account secret -> same hash on every instance: lines correlate
    other = [_logfmt(l) for l in _access_lines(b, 1)]
    assert by_ident[0]["user"] in {f["user"] for f in other}


def test_access_log_json_and_log_identities(gateway_factory, mock):
    gw = gateway_factory({"server": {"access_log": "json", "log_identities": "on"}})
    mock.add_user("bob smith", attributes=SECRET_ATTR)
    fetch(gw, user_path("v2", q("bob smith")))
    lines = _access_lines(gw)
    assert lines
    rec = json.loads(lines[-1][lines[-1].index("{"):])
    assert rec["msg"] == "access" and rec["user"] == "bob smith" and rec["status"] == 200
    assert rec["cache"] == "MISS" and rec["route"] == "/v2/Services/{ServiceSid}/Users/{Sid}"
    assert "078-05-1120" not in gw.stderr()
    # /v1/Users names no service: the log shows the default one it resolved to
    fetch(gw, user_path("v1", q("bob smith")))
    rec = json.loads(_access_lines(gw, 2)[-1].split(" ", 2)[2])
    assert rec["route"] == "/v1/Users/{Sid}" and rec["service"] == SERVICE, rec


def _notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(0.2)
    return s, path


def test_sd_notify_ready_reloading_stopping_watchdog_status(gateway_factory, mock, tmp_path):
    sock, path = _notify_socket(tmp_path)
    msgs, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                msgs.append(sock.recv(4096).decode())
            except socket.timeout:
                pass

    t = threading.Thread(target=reader)
    t.start()
    try:
        gw = gateway_factory(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        wait_until(lambda: "READY=1" in msgs, what="READY=1")
        wait_until(lambda: msgs.count("WATCHDOG=1") >= 3, what="watchdog pings")
        wait_until(lambda: any(m.startswith("STATUS=") for m in msgs), what="STATUS=")
        status = [m for m in msgs if m.startswith("STATUS=")][-1]
        assert re.search(r"req/s, hit ratio [\d.]+%", status), status
        n = len(msgs)
        gw.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "RELOADING=1" in msgs[n:] and "READY=1" in msgs[n:], what="reload")
        assert msgs[n:].index("RELOADING=1") < msgs[n:].index("READY=1")
        gw.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "STOPPING=1" in msgs, what="STOPPING=1")
        assert gw.proc.wait(10) == 0
    finally:
        stop.set()
        t.join(5)
        sock.close()
